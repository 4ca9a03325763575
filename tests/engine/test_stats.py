"""cgroup limits and usage for real: stats, OOM kills recorded as 137, pids and CPU limits.

The v2 and co-mounted v1 layouts this host lacks are read from fake cgroup trees.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import wait_until

from paas.engine.containers import ContainerSpec, ContainerStatus
from paas.engine.engine import Engine
from paas.engine.runtime.cgroups import Cgroups, Limits
from paas.errors import ContainerError

MiB = 1 << 20
# dd fills a 64 MiB buffer from /dev/zero: every page is touched, so it is really charged.
ALLOCATE_64M = ("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
FORK_LOOP = "sh -c 'while true; do sleep 60 & done'; echo fork-loop-stopped; sleep 60"


def spec(engine: Engine, *argv: str, **limits: object) -> ContainerSpec:
    image = engine.images.get("busybox")
    lowerdirs = tuple(str(p) for p in engine.images.lowerdirs(image))
    return ContainerSpec(name="limited", lowerdirs=lowerdirs, argv=argv, image=image.id,
                         network="none", **limits)  # type: ignore[arg-type]


def started(engine: Engine, *argv: str, **limits: object) -> str:
    container = engine.runtime.create(spec(engine, *argv, **limits))
    return engine.runtime.start(container.id).id


def log_has(engine: Engine, container_id: str, text: str) -> bool:
    return text in engine.runtime.logs_path(container_id).read_text()


def test_stats_of_a_running_container(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    container_id = started(busybox_engine, "sh", "-c", "x=$(seq 100000); echo ready; sleep 60",
                           memory_bytes=64 * MiB, pids_limit=20)
    wait_until(lambda: log_has(busybox_engine, container_id, "ready"), what="the container")
    stats = runtime.stats(container_id)
    assert 0 < stats.memory_bytes < 64 * MiB and stats.memory_limit == 64 * MiB
    assert stats.pids >= 2 and stats.pids_limit == 20  # the init, sh and its sleep
    assert stats.cpu_ns > 0
    runtime.stop(container_id, timeout=0)
    with pytest.raises(ContainerError, match="not running"):
        runtime.stats(container_id)
    unlimited = started(busybox_engine, "sleep", "60")
    stats = runtime.stats(unlimited)
    assert stats.memory_limit is None and stats.pids_limit is None


def test_an_allocation_above_the_limit_is_oom_killed(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    lines: list[str] = []
    result = runtime.run(spec(busybox_engine, *ALLOCATE_64M, memory_bytes=16 * MiB), lines.append)
    assert result.exit_code == 137
    error = runtime.get(result.container_id).state.error
    assert error == f"OOM killed (memory limit {16 * MiB} bytes)"
    # detached: the kill is found when the exit is recorded, before the cgroup goes
    container_id = started(busybox_engine, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1",
                           memory_bytes=16 * MiB)
    finished = runtime.wait(container_id, timeout=30)
    assert finished.status is ContainerStatus.EXITED and finished.exit_code == 137
    assert finished.state.error and finished.state.error.startswith("OOM killed")
    # the same allocation within the limit is no OOM
    within = runtime.run(spec(busybox_engine, *ALLOCATE_64M, memory_bytes=256 * MiB), lines.append)
    assert within.exit_code == 0 and runtime.get(within.container_id).state.error is None


def test_pids_limit_stops_a_fork_loop(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    container_id = started(busybox_engine, "sh", "-c", FORK_LOOP, pids_limit=10)
    wait_until(lambda: log_has(busybox_engine, container_id, "fork-loop-stopped"), what="the fork loop")
    assert log_has(busybox_engine, container_id, "can't fork")
    stats = runtime.stats(container_id)
    assert stats.pids_limit == 10 and 5 <= stats.pids <= 10
    assert runtime.get(container_id).status is ContainerStatus.RUNNING


def test_cpus_sets_the_quota_and_cpu_time_is_counted(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    container_id = started(busybox_engine, "sh", "-c", "while true; do :; done", cpus=0.5)
    paths = {p.parent.parent.name: p for p in runtime.cgroups.paths(container_id)}
    if runtime.cgroups.unified:
        (path,) = paths.values()
        assert (path / "cpu.max").read_text().split() == ["50000", "100000"]
    else:
        assert (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (paths["cpu"] / "cpu.cfs_period_us").read_text().strip() == "100000"
    wait_until(lambda: runtime.stats(container_id).cpu_ns > 50_000_000, what="CPU time to add up")


def _fake(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)


def test_v2_files_are_read(tmp_path: Path) -> None:
    base = tmp_path / "cgroup"
    _fake(base, {"cgroup.controllers": "cpuset cpu io memory pids\n"})
    cgroups = Cgroups(tmp_path / "root", base)
    cgroups.create("c1", Limits(32 * MiB, 1.5, 7))
    [group] = cgroups.paths("c1")
    assert (group / "cpu.max").read_text() == "150000 100000"
    _fake(group, {"memory.current": "5000000\n", "memory.stat": "anon 1\ninactive_file 1000000\n",
                  "cpu.stat": "usage_usec 2500\nuser_usec 2000\n", "pids.current": "3\n",
                  "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"})
    stats = cgroups.stats("c1")
    assert (stats.memory_bytes, stats.memory_limit, stats.cpu_ns, stats.pids, stats.pids_limit) == (
        4_000_000, 32 * MiB, 2_500_000, 3, 7)
    assert cgroups.oom_kills("c1") == 1
    (group / "memory.max").write_text("max\n")
    assert cgroups.stats("c1").memory_limit is None
    assert cgroups.oom_kills("gone") == 0


def test_co_mounted_cpu_and_cpuacct_make_one_group(tmp_path: Path) -> None:
    base = tmp_path / "cgroup"
    for hierarchy in ("memory", "pids", "cpu,cpuacct"):
        (base / hierarchy).mkdir(parents=True)
    (base / "cpu").symlink_to("cpu,cpuacct")
    (base / "cpuacct").symlink_to("cpu,cpuacct")
    cgroups = Cgroups(tmp_path / "root", base)
    assert [p.parent.name for p in cgroups.parents] == ["memory", "cpu", "pids"]
