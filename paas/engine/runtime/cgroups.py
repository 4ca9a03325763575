"""Control groups: one parent group per engine root, one child group per container.

Works on cgroup v2 (the unified hierarchy at /sys/fs/cgroup) and on v1/hybrid hosts,
where the memory, cpu and pids controllers each have their own hierarchy.
"""

from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from paas.errors import ContainerError

CGROUP_BASE = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
RMDIR_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None


def group_name(root: Path) -> str:
    """The parent group of an engine root, so engines on different roots never collide."""
    return "paas-" + hashlib.sha256(str(root).encode()).hexdigest()[:10]


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise ContainerError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _rmdir(path: Path, timeout: float = RMDIR_TIMEOUT) -> None:
    """Remove a cgroup dir, waiting for exiting tasks to leave it (EBUSY meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise ContainerError(f"cannot remove cgroup {path}: {exc.strerror}") from None
            time.sleep(0.01)


class Cgroups:
    """Create, fill, limit and remove the cgroups of one engine root."""

    def __init__(self, root: Path, base: Path = CGROUP_BASE) -> None:
        self.name = group_name(root)
        self.unified = (base / "cgroup.controllers").is_file()
        if self.unified:
            self.parents = [base / self.name]
        else:
            self.parents = [base / c / self.name for c in V1_CONTROLLERS if (base / c).is_dir()]
        self.base = base

    def paths(self, container_id: str) -> list[Path]:
        return [parent / container_id for parent in self.parents]

    def create(self, container_id: str, limits: Limits) -> None:
        self._ensure_parents()
        for path in self.paths(container_id):
            path.mkdir(exist_ok=True)
        if self.unified:
            self._limit_v2(self.parents[0] / container_id, limits)
        else:
            self._limit_v1(container_id, limits)

    def add(self, container_id: str, pid: int) -> None:
        for path in self.paths(container_id):
            _write(path / "cgroup.procs", str(pid))

    def remove(self, container_id: str) -> None:
        for path in self.paths(container_id):
            _rmdir(path)

    def teardown(self) -> None:
        """Remove every container group of this root, then the parent groups."""
        for parent in self.parents:
            if parent.is_dir():
                for child in parent.iterdir():
                    if child.is_dir():
                        _rmdir(child)
                _rmdir(parent)

    def _ensure_parents(self) -> None:
        for parent in self.parents:
            parent.mkdir(exist_ok=True)
        if self.unified:
            wanted = self._v2_controllers()
            # Controllers must be enabled top-down before the child groups can use them.
            for group in (self.base, self.parents[0]):
                _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def _v2_controllers(self) -> list[str]:
        available = (self.base / "cgroup.controllers").read_text().split()
        return [c for c in V1_CONTROLLERS if c in available]

    def _limit_v1(self, container_id: str, limits: Limits) -> None:
        by_name = {p.parent.name: p / container_id for p in self.parents}
        if limits.memory_bytes is not None and "memory" in by_name:
            _write(by_name["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
        if limits.cpus is not None and "cpu" in by_name:
            _write(by_name["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(by_name["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
        if limits.pids_limit is not None and "pids" in by_name:
            _write(by_name["pids"] / "pids.max", str(limits.pids_limit))

    @staticmethod
    def _limit_v2(path: Path, limits: Limits) -> None:
        if limits.memory_bytes is not None:
            _write(path / "memory.max", str(limits.memory_bytes))
        if limits.cpus is not None:
            _write(path / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids_limit is not None:
            _write(path / "pids.max", str(limits.pids_limit))


def procs(path: Path) -> list[int]:
    """Pids in one cgroup dir (empty when it is gone)."""
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


__all__ = ["Cgroups", "Limits", "group_name", "procs"]
