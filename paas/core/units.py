"""Sizes as people read them: Docker's decimal units, three significant digits (``2.13MB``)."""

from __future__ import annotations

SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float) -> str:
    unit = 0
    while size >= 1000 and unit < len(SIZE_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.3g}{SIZE_UNITS[unit]}"
