"""What runs for an app, read back from the engine: each container as a process (type, index,
release, state, uptime, address), with its memory and CPU when asked.

Read-only: the rollout (scheduler.local, deploy) makes and retires the containers; this module
only finds them by their labels, for `ps`, `logs` and `run`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from paas.engine.containers import Container, ContainerStatus
from paas.engine.engine import Engine
from paas.errors import ContainerError
from paas.scheduler.local import (
    LABEL_APP,
    LABEL_INDEX,
    LABEL_ONEOFF,
    LABEL_PROCESS,
    LABEL_RELEASE,
    WEB_PORT,
)

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True, slots=True)
class AppProcess:
    """One container of an app as `ps` shows it."""

    container_id: str
    name: str
    process_type: str
    index: int
    release: int
    status: ContainerStatus
    ip: str | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    restarts: int
    oneoff: bool
    stopped: bool = False  # by a user (an engine stop), not by itself
    memory_bytes: int | None = None
    cpu_seconds: float | None = None

    @property
    def dyno(self) -> str:
        """Heroku's name of a process: `web.1`."""
        return f"{self.process_type}.{self.index}"

    @property
    def running(self) -> bool:
        return self.status is ContainerStatus.RUNNING

    @property
    def address(self) -> str:
        return f"{self.ip}:{WEB_PORT}" if self.ip and self.running else ""

    def state(self, now: float | None = None) -> str:
        """`up 2m`, `crashed 10s ago (exit 1)`, `exited 5m ago`, `created`."""
        now = time.time() if now is None else now
        if self.running:
            restarted = f", restarted {self.restarts}x" if self.restarts else ""
            return f"up {human_duration(now - (self.started_at or now))}{restarted}"
        if self.finished_at is None and self.started_at is None:
            return "created"
        since = human_duration(now - (self.finished_at or self.started_at or now))
        word = "stopped" if self.stopped else "exited" if self.exit_code in (0, None) else "crashed"
        code = f" (exit {self.exit_code})" if self.exit_code and not self.stopped else ""
        return f"{word} {since} ago{code}"

    def to_json(self, now: float | None = None) -> dict[str, object]:
        return {
            "process": self.dyno, "type": self.process_type, "index": self.index,
            "release": self.release, "status": self.status.value, "state": self.state(now),
            "container_id": self.container_id, "name": self.name, "ip": self.ip,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "exit_code": self.exit_code, "restarts": self.restarts, "oneoff": self.oneoff,
            "stopped": self.stopped,
            "memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds,
        }


def human_duration(seconds: float) -> str:
    """Like Heroku's `ps`: `45s`, `2m`, `1h3m`, `2d4h` (minutes drop the seconds)."""
    left = max(0, int(seconds))
    for i, (unit, size) in enumerate(_UNITS):
        if left < size and unit != "s":
            continue
        text = f"{left // size}{unit}"
        if unit in ("d", "h"):
            next_unit, next_size = _UNITS[i + 1]
            if rest := (left % size) // next_size:
                text += f"{rest}{next_unit}"
        return text
    return "0s"


def app_processes(engine: Engine, app: str, *, stats: bool = False,
                  oneoff: bool | None = None) -> list[AppProcess]:
    """The app's containers as processes: web first, then by type, index and release.
    `oneoff`: only one-off containers (True), none of them (False), or all (None)."""
    found = [process_of(c) for c in engine.runtime.list({LABEL_APP: app})]
    if oneoff is not None:
        found = [p for p in found if p.oneoff == oneoff]
    if stats:
        found = [_with_stats(engine, p) for p in found]
    return sorted(found, key=_order)


def process_of(container: Container) -> AppProcess:
    labels = container.labels
    state = container.state
    return AppProcess(
        container_id=container.id, name=container.name,
        process_type=labels.get(LABEL_PROCESS, ""), index=_index(container),
        release=_int(labels.get(LABEL_RELEASE)), status=container.status, ip=container.ip,
        started_at=state.started_at, finished_at=state.finished_at, exit_code=state.exit_code,
        restarts=state.restart_count, oneoff=labels.get(LABEL_ONEOFF) == "1",
        stopped=state.stopped_by_user,
    )


def by_type(processes: Iterable[AppProcess]) -> dict[str, list[AppProcess]]:
    """Processes grouped by type, in `app_processes` order."""
    groups: dict[str, list[AppProcess]] = {}
    for process in processes:
        groups.setdefault(process.process_type, []).append(process)
    return groups


def _order(process: AppProcess) -> tuple[int, bool, str, int, int]:
    return (process.process_type != "web", process.oneoff, process.process_type, process.index,
            process.release)


def _index(container: Container) -> int:
    """The paas.index label; else the N of a name `app.type.N...`."""
    label = container.labels.get(LABEL_INDEX)
    if label is not None:
        return _int(label)
    parts = container.name.split(".")
    digits = parts[2] if len(parts) > 2 else ""
    return _int("".join(c for c in digits[:9] if c.isdigit()) or None)


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


def _with_stats(engine: Engine, process: AppProcess) -> AppProcess:
    if not process.running:
        return process
    try:
        usage = engine.runtime.stats(process.container_id)
    except (ContainerError, OSError):  # it exited meanwhile
        return process
    return replace(process, memory_bytes=usage.memory_bytes, cpu_seconds=usage.cpu_ns / 1e9)
