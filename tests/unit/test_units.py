"""Sizes printed the way Docker prints them."""

from __future__ import annotations

import pytest

from paas.core.units import binary_size, human_size


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (2_130_000, "2.13MB"), (95_000_000, "95MB"),
     (168_160_000, "168MB"), (1.5e12, "1.5TB"), (3e18, "3e+03PB")],
)
def test_human_size(size: float, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (1023, "1023B"), (1024, "1KiB"), (1_593_835, "1.52MiB"), (16 << 20, "16MiB")],
)
def test_binary_size(size: float, shown: str) -> None:
    assert binary_size(size) == shown
