"""Lend the pids and cpu controllers of this hybrid host to its cgroup v2 hierarchy, for a test.

The host mounts each controller as a v1 hierarchy under /sys/fs/cgroup and an empty cgroup2
at /sys/fs/cgroup/unified. The kernel moves a controller to v2 once its v1 hierarchy is
unmounted and has no child groups, and back when that hierarchy is mounted again. So the
tests of the v2 code run on the real kernel: `moved_to_v2` unmounts the hierarchies (only
while they hold no groups: other test runs on this host use them), waits for the controllers
to show up in v2, and on the way out removes our groups, disables the controllers and mounts
the hierarchies back as they were, checking /proc/self/mountinfo shows the same mounts there.

While they are moved, engines of other processes find no pids or cpu hierarchy, so the
window is kept short: one test module. A lock file keeps two of our own runs apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = CGROUP_ROOT / "unified"
# cpuacct stays v1: it has no v2 interface (v2's cpu.stat is the core's), and moving only
# what the tests need disturbs the other runs on this host less.
MOVED = ("pids", "cpu")
LOCK = Path("/run/lock/paas-cgroup2-test.lock")
IDLE_WAIT = 40.0  # for other runs to remove their groups from the hierarchies
MOVE_WAIT = 3.0  # for the kernel to finish destroying an unmounted hierarchy
REBIND_WAIT = 20.0  # for the kernel to release a controller the v2 groups held
POLL = 0.02


@dataclass(frozen=True, slots=True)
class Mount:
    """A mountinfo line without the fields a remount renumbers (ids, device, peer groups)."""

    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str

    def mount_argv(self) -> list[str]:
        # mount(8) splits -o into per-mount flags and the superblock's own options.
        flags = [o for o in self.options.split(",") if o != "rw"]
        return ["mount", "-t", self.fstype, "-o", ",".join([*flags, self.super_options]),
                self.source, self.mountpoint]


def cgroup_mounts() -> set[Mount]:
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        dash = fields.index("-")
        fstype, source, super_options = fields[dash + 1 : dash + 4]
        if fstype.startswith("cgroup"):
            found.add(Mount(fields[3], fields[4], fields[5], fstype, source, super_options))
    return found


def child_groups(hierarchy: Path) -> list[Path]:
    """The top-level groups (others' runs may remove theirs as we look)."""
    with contextlib.suppress(FileNotFoundError):
        return [p for p in hierarchy.iterdir() if p.is_dir()]
    return []


def busy_controllers() -> list[str]:
    """MOVED's controllers whose hierarchy holds groups besides its root (/proc/cgroups)."""
    busy = []
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        name, _, count, _ = line.split()
        if name in MOVED and int(count) > 1:
            busy.append(name)
    return busy


def unified_controllers() -> set[str]:
    return set((UNIFIED / "cgroup.controllers").read_text().split())


@contextlib.contextmanager
def moved_to_v2() -> Iterator[Path]:
    """The cgroup2 base with MOVED's controllers on it; everything restored after."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = cgroup_mounts()
        hierarchies = _v1_mounts(before)
        _check_unified_idle()
        try:
            _move(hierarchies)
            yield UNIFIED
        finally:
            _restore(hierarchies, before)


def _v1_mounts(mounts: set[Mount]) -> list[Mount]:
    by_point = {m.mountpoint: m for m in mounts if m.fstype == "cgroup"}
    missing = [name for name in MOVED if str(CGROUP_ROOT / name) not in by_point]
    if missing:  # e.g. a run killed while they were moved: `mount -t cgroup -o pids cgroup ...`
        raise RuntimeError(f"v1 hierarchies {missing} are not mounted: restore them first")
    return [by_point[str(CGROUP_ROOT / name)] for name in MOVED]


def _check_unified_idle() -> None:
    """Nobody uses controllers on v2. Others' empty groups are fine (podman leaves
    `libpod_parent`): they gain and lose our controllers with the root, untouched."""
    if (UNIFIED / "cgroup.subtree_control").read_text().split():
        raise RuntimeError(f"{UNIFIED} already has controllers: refusing to touch it")
    for group in child_groups(UNIFIED):
        busy = (group / "cgroup.subtree_control").read_text().split() or any(
            (sub / "cgroup.procs").read_text().strip() for sub in [group, *group.rglob("*")]
            if sub.is_dir())
        if busy:
            raise RuntimeError(f"{group} is in use: refusing to move controllers to {UNIFIED}")


def _move(hierarchies: list[Mount]) -> None:
    """Unmount the hierarchies the moment none holds a group; retry if one slipped in."""
    deadline = time.monotonic() + IDLE_WAIT
    while True:
        busy = busy_controllers()
        if not busy:
            for mount in hierarchies:
                subprocess.run(["umount", mount.mountpoint], check=True)
            if _wait_for(lambda: set(MOVED) <= unified_controllers(), MOVE_WAIT):
                return
            _remount(hierarchies)  # a group slipped in between the check and the unmount
        if time.monotonic() > deadline:
            raise RuntimeError(f"v1 hierarchies still hold groups of other runs: {busy}")
        time.sleep(POLL)


def _restore(hierarchies: list[Mount], before: set[Mount]) -> None:
    try:
        for parent in child_groups(UNIFIED):
            if parent.name.startswith("paas-"):  # a failed test's; only our tests use v2 here
                for group in child_groups(parent):
                    _rmdir(group)
                _rmdir(parent)
        enabled = (UNIFIED / "cgroup.subtree_control").read_text().split()
        if enabled:
            (UNIFIED / "cgroup.subtree_control").write_text(" ".join(f"-{c}" for c in enabled))
    finally:  # whatever is left on v2, try to give the host its hierarchies back
        _remount(hierarchies)
    # Only the mounts we touched: the host mounts and unmounts others (hugetlb) on its own.
    ours = {str(CGROUP_ROOT / name) for name in MOVED} | {str(UNIFIED)}
    was = {m for m in before if m.mountpoint in ours}
    now = {m for m in cgroup_mounts() if m.mountpoint in ours}
    if now != was:
        raise RuntimeError(f"cgroup mounts not restored: lost {was - now}, new {now - was}")


def _remount(hierarchies: list[Mount]) -> None:
    """Mount what is not mounted, retrying while the kernel still holds a controller on v2."""
    mounted = {m.mountpoint for m in cgroup_mounts()}
    for mount in hierarchies:
        if mount.mountpoint in mounted:
            continue
        deadline = time.monotonic() + REBIND_WAIT
        while True:
            result = subprocess.run(mount.mount_argv(), capture_output=True, text=True)
            if result.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(mount.mount_argv())}: {result.stderr.strip()}")
            time.sleep(0.05)


def _rmdir(group: Path) -> None:
    deadline = time.monotonic() + REBIND_WAIT
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL)


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True
