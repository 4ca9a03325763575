"""Fixtures of the end-to-end tests: the platform's base images, built once (see the
`stack_engine` fixture) by the code `paas up` runs, so each platform started here does not
debootstrap Debian again."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def base_images(stack_engine: Path) -> Path:
    """An engine root holding busybox, debian:bookworm and the stack: seed a PAAS_HOME with it
    (seed_engine) before scripts/up; never change it."""
    return stack_engine

