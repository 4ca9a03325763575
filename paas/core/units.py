"""Sizes as people read them, the way Docker prints them: decimal units with three significant
digits in tables (``2.13MB``), binary units with four in ``stats`` (``1.52MiB``)."""

from __future__ import annotations

import re

from paas.errors import UsageError

SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
MEMORY_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
MIN_MEMORY = 6 * 1024 * 1024  # Docker's floor: less cannot even start a process


def human_size(size: float) -> str:
    return _scaled(size, 1000, SIZE_UNITS, 3)


def binary_size(size: float) -> str:
    return _scaled(size, 1024, BINARY_UNITS, 4)


def _scaled(size: float, step: int, units: tuple[str, ...], digits: int) -> str:
    unit = 0
    while size >= step and unit < len(units) - 1:
        size /= step
        unit += 1
    return f"{size:.{digits}g}{units[unit]}"


def parse_memory(text: str) -> int:
    """Docker's sizes: 256m, 1g, 512k, 1.5g, 100000 (bytes); binary units."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise UsageError(f"invalid size {text!r}: a number with an optional unit b, k, m or g")
    value = int(float(match.group(1)) * MEMORY_UNITS[match.group(2).lower()])
    if value < MIN_MEMORY:
        raise UsageError("minimum memory limit allowed is 6MB")
    return value
