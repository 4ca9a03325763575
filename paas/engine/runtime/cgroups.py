"""Control groups: one parent group per engine root, one child group per container.

Works on cgroup v2 (the unified hierarchy at /sys/fs/cgroup, with the controllers the host
offers there) and on v1/hybrid hosts, where the memory, cpu, cpuacct and pids controllers each
have their own hierarchy (cpu and cpuacct are often one, mounted twice). A limit on a
controller the host lacks is an error, never silently dropped. Besides limits it reads what
a container used (`stats`) and whether the kernel's OOM killer struck in it (`oom_kills`).
"""

from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from paas.errors import ContainerError

CGROUP_BASE = Path("/sys/fs/cgroup")
# cpuacct carries the v1 CPU time; v2 keeps it in every group's cpu.stat.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")
# v1 writes "no limit" as the largest page-aligned value; anything this big is no limit.
UNLIMITED = 1 << 62
OOM_KILLED = "OOM killed"
CPU_PERIOD_US = 100_000
RMDIR_TIMEOUT = 5.0
CREATE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """What a container uses now. Memory leaves out inactive page cache, as Docker's does;
    a limit of None means none is set."""

    memory_bytes: int
    memory_limit: int | None
    cpu_ns: int
    pids: int
    pids_limit: int | None


def oom_error(memory_limit: int | None) -> str:
    """The error recorded for a container the OOM killer struck."""
    return f"{OOM_KILLED} (memory limit {memory_limit} bytes)"


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
    """Create, fill, limit and remove the cgroups of one engine root.

    A parent group lives only while it holds container groups: the last `remove` takes it
    away, so a root deleted without `teardown` leaves nothing behind in the hierarchies.
    """

    def __init__(self, root: Path, base: Path = CGROUP_BASE) -> None:
        self.name = group_name(root)
        self.base = base
        self.unified = (base / "cgroup.controllers").is_file()
        if self.unified:
            self.parents = [base / self.name]
            self.controllers = frozenset(_words(base / "cgroup.controllers"))
        else:
            self.parents = [h / self.name for h in _v1_hierarchies(base)]
            self.controllers = frozenset(c for c in V1_CONTROLLERS if (base / c).is_dir())

    def paths(self, container_id: str) -> list[Path]:
        return [parent / container_id for parent in self.parents]

    def create(self, container_id: str, limits: Limits) -> None:
        self._check(limits)
        for attempt in range(CREATE_ATTEMPTS):
            self._ensure_parents()
            try:
                for path in self.paths(container_id):
                    _mkdir(path)
                break
            except FileNotFoundError:  # another process removed the emptied parent meanwhile
                if attempt == CREATE_ATTEMPTS - 1:
                    raise ContainerError(f"cannot create the cgroups of {container_id}") from None
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
        for parent in self.parents:
            _rmdir_if_empty(parent)

    def teardown(self) -> None:
        """Remove every container group of this root, then the parent groups."""
        for parent in self.parents:
            if parent.is_dir():
                for child in parent.iterdir():
                    if child.is_dir():
                        _rmdir(child)
                _rmdir(parent)

    def _check(self, limits: Limits) -> None:
        """A limit on a controller the host lacks would silently not hold: refuse it."""
        asked = (("memory", limits.memory_bytes, "memory"), ("cpu", limits.cpus, "CPU"),
                 ("pids", limits.pids_limit, "pids"))
        for controller, value, what in asked:
            if value is not None and controller not in self.controllers:
                layout = "cgroup v2 hierarchy" if self.unified else "cgroup v1 hierarchies"
                raise ContainerError(
                    f"cannot set a {what} limit: the {controller} controller is not in this "
                    f"host's {layout} at {self.base}"
                )

    def _ensure_parents(self) -> None:
        for parent in self.parents:
            try:
                parent.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise ContainerError(f"cannot create cgroup {parent}: {exc.strerror}") from None
            # A hierarchy unmounted since we looked leaves a plain directory: no cgroup.
            if not self.unified and not (parent / "cgroup.procs").is_file():
                parent.rmdir()
                raise ContainerError(f"cgroup hierarchy {parent.parent} is no longer mounted")
        if self.unified:
            wanted = [c for c in V2_CONTROLLERS if c in self.controllers]
            # Enabled top-down: a group offers its children only what its parent enabled.
            for group in (self.base, self.parents[0]):
                _enable(group, wanted)

    def _limit_v1(self, container_id: str, limits: Limits) -> None:
        by_name = {p.parent.name: p / container_id for p in self.parents}
        if limits.memory_bytes is not None:
            _write(by_name["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
        if limits.cpus is not None:
            _write(by_name["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(by_name["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
        if limits.pids_limit is not None:
            _write(by_name["pids"] / "pids.max", str(limits.pids_limit))

    @staticmethod
    def _limit_v2(path: Path, limits: Limits) -> None:
        if limits.memory_bytes is not None:
            _write(path / "memory.max", str(limits.memory_bytes))
        if limits.cpus is not None:
            _write(path / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids_limit is not None:
            _write(path / "pids.max", str(limits.pids_limit))

    # -- usage -----------------------------------------------------------------------------

    def stats(self, container_id: str) -> Stats:
        """Memory, CPU time and pids of a container, from its cgroup files."""
        paths = self.paths(container_id)
        if not all(p.is_dir() for p in paths):
            raise ContainerError(f"container {container_id} has no cgroup (not running?)")
        if self.unified:
            return _stats_v2(paths[0])
        return _stats_v1(paths)

    def oom_kills(self, container_id: str) -> int:
        """How many processes the OOM killer took from the container (0 once its group is gone).

        Read it before `remove`: the counter lives in the group.
        """
        if self.unified:
            name, path = "memory.events", self.parents[0] / container_id
        else:
            name, path = "memory.oom_control", self.base / "memory" / self.name / container_id
        try:
            return _keyed(path / name).get("oom_kill", 0)
        except FileNotFoundError:
            return 0


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ContainerError(f"cannot create cgroup {path}: {exc.strerror}") from None


def _rmdir_if_empty(path: Path) -> None:
    """Remove a parent group unless other container groups still live in it."""
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            raise ContainerError(f"cannot remove cgroup {path}: {exc.strerror}") from None


def _enable(group: Path, controllers: list[str]) -> None:
    """Enable `controllers` for the children of `group` (a read first: usually all are on)."""
    try:
        enabled = _words(group / "cgroup.subtree_control")
    except FileNotFoundError:
        enabled = []
    missing = [c for c in controllers if c not in enabled]
    if missing:
        _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _words(path: Path) -> list[str]:
    return path.read_text().split()


def _v1_hierarchies(base: Path) -> list[Path]:
    """One dir per mounted v1 hierarchy of ours; co-mounted controllers (cpu,cpuacct) once."""
    seen: set[Path] = set()
    found = []
    for controller in V1_CONTROLLERS:
        hierarchy = base / controller
        if hierarchy.is_dir() and (real := hierarchy.resolve()) not in seen:
            seen.add(real)
            found.append(hierarchy)
    return found


def _keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (`memory.stat`, `cpu.stat`, `memory.events`): name value per line."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _number(path: Path) -> int | None:
    """A single-value file; None for "max" or a v1 no-limit value."""
    text = path.read_text().strip()
    if text == "max":
        return None
    value = int(text)
    return None if value >= UNLIMITED else value


def _first(paths: list[Path], name: str) -> Path:
    """The file `name` in whichever v1 hierarchy has it."""
    for path in paths:
        if (path / name).is_file():
            return path / name
    raise ContainerError(f"no cgroup file {name} under {paths[0].parent.parent.parent}")


def _stats_v1(paths: list[Path]) -> Stats:
    memory = _first(paths, "memory.usage_in_bytes").parent
    cache = _keyed(memory / "memory.stat").get("total_inactive_file", 0)
    pids = _first(paths, "pids.current").parent
    return Stats(
        memory_bytes=max(0, (_number(memory / "memory.usage_in_bytes") or 0) - cache),
        memory_limit=_number(memory / "memory.limit_in_bytes"),
        cpu_ns=_number(_first(paths, "cpuacct.usage")) or 0,
        pids=_number(pids / "pids.current") or 0,
        pids_limit=_number(pids / "pids.max"),
    )


def _stats_v2(path: Path) -> Stats:
    """cpu.stat is always there (the core keeps it); memory and pids files only when the host
    offers those controllers: without, usage reads 0 and the limit none."""
    memory = 0
    if (path / "memory.current").is_file():
        cache = _keyed(path / "memory.stat").get("inactive_file", 0)
        memory = max(0, (_number(path / "memory.current") or 0) - cache)
    return Stats(
        memory_bytes=memory,
        memory_limit=_optional_number(path / "memory.max"),
        cpu_ns=_keyed(path / "cpu.stat").get("usage_usec", 0) * 1000,
        pids=_optional_number(path / "pids.current") or 0,
        pids_limit=_optional_number(path / "pids.max"),
    )


def _optional_number(path: Path) -> int | None:
    try:
        return _number(path)
    except FileNotFoundError:
        return None


def procs(path: Path) -> list[int]:
    """Pids in one cgroup dir (empty when it is gone)."""
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


__all__ = ["OOM_KILLED", "Cgroups", "Limits", "Stats", "group_name", "oom_error", "procs"]
