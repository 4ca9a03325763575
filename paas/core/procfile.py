"""Procfile parsing: `type: command` lines into an ordered mapping of process types."""

from __future__ import annotations

import re

from paas.core.names import validate_process_type
from paas.errors import NameInvalidError, ProcfileInvalidError

_LINE_RE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")
MAX_PROCFILE_BYTES = 64 * 1024


def parse_procfile(text: str) -> dict[str, str]:
    """Parse a Procfile; blank lines and `#` comments are ignored, duplicates are errors."""
    if len(text.encode()) > MAX_PROCFILE_BYTES:
        raise ProcfileInvalidError("Procfile is larger than 64 KiB")
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match or not match.group(2).strip():
            raise ProcfileInvalidError(f"Procfile line {number}: expected 'type: command', got {raw!r}")
        name, command = match.group(1), match.group(2).strip()
        try:
            validate_process_type(name)
        except NameInvalidError as exc:
            raise ProcfileInvalidError(f"Procfile line {number}: {exc}") from None
        if name in processes:
            raise ProcfileInvalidError(f"Procfile line {number}: process type {name!r} is defined twice")
        processes[name] = command
    return processes
