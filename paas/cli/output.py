"""How listing commands print: a table for people, or `--format json` for programs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "json")


def format_option(command: F) -> F:
    """Adds `--format text|json` (Dokku's flag on its report and list commands)."""
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
        help="Print a table, or JSON for scripts.",
    )(command)


def emit(fmt: str, data: Any, text: Callable[[], None]) -> None:
    """Print `data` as JSON, or call `text` to print it for people."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        text()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns, two spaces apart, like Dokku's and Docker's tables."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
