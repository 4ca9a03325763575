"""ExecSpec: what the exec helper (runtime.nsexec) needs, sent by the engine as JSON.

A module of its own so that the helper, which starts with every exec, imports only this.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """What the helper needs; paths are the host's, the rest is read inside the container."""

    pid: int
    starttime: int
    cgroups: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[str, ...]
    user: str
    workdir: str
    hostname: str
    tty: bool
    winsize: tuple[int, int] | None  # rows, columns: set before the process starts

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> ExecSpec:
        data = json.loads(raw)
        size = data["winsize"]
        return cls(**{
            **data, "cgroups": tuple(data["cgroups"]), "argv": tuple(data["argv"]),
            "env": tuple(data["env"]), "winsize": None if size is None else tuple(size),
        })
