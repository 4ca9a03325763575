"""Sizes as people read them, the way Docker prints them: decimal units with three significant
digits in tables (``2.13MB``), binary units with four in ``stats`` (``1.52MiB``)."""

from __future__ import annotations

SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


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
