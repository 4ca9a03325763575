"""cgroup v2 for real, on this hybrid host: pids and cpu are lent to its cgroup2 mount for the
module (see cgroup2_kit), then the engine limits, counts and removes groups there and gives
each container its own cgroup namespace. Memory stays v1 (the host's own agent uses that
hierarchy), so memory.max and memory.events are covered by pure-logic tests on a fake tree.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cgroup2_kit import child_groups, moved_to_v2
from testkit import random_subnet, wait_until

from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import ImageStore
from paas.engine.network import Network
from paas.engine.runtime import Runtime
from paas.engine.runtime.cgroups import Cgroups, Limits, procs
from paas.errors import ContainerError

MiB = 1 << 20
FORK_LOOP = "sh -c 'while true; do sleep 60 & done'; echo fork-loop-stopped; sleep 60"
BUSY_LOOP = "echo busy; while :; do :; done"


# -- pure logic on a fake v2 tree: memory cannot move to v2 on this host --------------------

def _fake_v2(tmp_path: Path, controllers: str) -> tuple[Path, Cgroups]:
    base = tmp_path / "cgroup"
    base.mkdir()
    (base / "cgroup.controllers").write_text(controllers + "\n")
    return base, Cgroups(tmp_path / "root", base)


def test_fake_tree_memory_max_and_oom_kills_from_memory_events(tmp_path: Path) -> None:
    base, cgroups = _fake_v2(tmp_path, "cpuset cpu io memory pids")
    cgroups.create("c1", Limits(memory_bytes=32 * MiB))
    [group] = cgroups.paths("c1")
    assert (group / "memory.max").read_text() == str(32 * MiB)
    assert not (group / "cpu.max").exists() and not (group / "pids.max").exists()
    # the controllers are enabled top-down, the ones the host has and we use, nothing else
    assert (base / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (base / cgroups.name / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    assert cgroups.oom_kills("c1") == 2
    (group / "memory.events").unlink()
    assert cgroups.oom_kills("c1") == 0


def test_fake_tree_subtree_control_only_gains_what_is_missing(tmp_path: Path) -> None:
    base, cgroups = _fake_v2(tmp_path, "cpu pids")
    (base / "cgroup.subtree_control").write_text("cpu\n")  # as the kernel shows it
    cgroups.create("c1", Limits(cpus=1.5, pids_limit=7))
    assert (base / "cgroup.subtree_control").read_text() == "+pids"
    [group] = cgroups.paths("c1")
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (group / "pids.max").read_text() == "7"


def test_fake_tree_stats_without_the_memory_controller(tmp_path: Path) -> None:
    _, cgroups = _fake_v2(tmp_path, "cpu pids")
    cgroups.create("c1", Limits())
    [group] = cgroups.paths("c1")
    (group / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\n")
    (group / "pids.current").write_text("3\n")
    (group / "pids.max").write_text("max\n")
    stats = cgroups.stats("c1")
    assert (stats.memory_bytes, stats.memory_limit, stats.cpu_ns, stats.pids, stats.pids_limit) == (
        0, None, 2_500_000, 3, None)


def test_fake_tree_a_limit_on_a_missing_controller_is_refused(tmp_path: Path) -> None:
    base, cgroups = _fake_v2(tmp_path, "cpu pids")
    with pytest.raises(ContainerError, match="memory controller is not in this host's cgroup v2"):
        cgroups.create("c1", Limits(memory_bytes=32 * MiB, pids_limit=7))
    assert not (base / cgroups.name).exists()  # refused before anything was made
    cgroups.create("c1", Limits(pids_limit=7))  # no memory limit asked: fine without it


def test_fake_tree_the_last_container_takes_the_parent_group_with_it(tmp_path: Path) -> None:
    base, cgroups = _fake_v2(tmp_path, "cpu pids")
    cgroups.create("c1", Limits())
    cgroups.create("c2", Limits())
    cgroups.remove("c1")
    assert (base / cgroups.name).is_dir() and not (base / cgroups.name / "c1").exists()
    (base / cgroups.name / "cgroup.subtree_control").unlink()  # a kernel's files never block rmdir
    cgroups.remove("c2")
    assert not (base / cgroups.name).exists()
    cgroups.remove("c2")  # already gone: fine


# -- the real kernel, with pids and cpu moved to v2 ----------------------------------------

@pytest.fixture(scope="module")
def v2_base() -> Iterator[Path]:
    with moved_to_v2() as base:
        yield base


@pytest.fixture
def engine(tmp_path: Path, busybox_root: Path, v2_base: Path) -> Iterator[Engine]:
    root = tmp_path / "engine"
    shutil.copytree(busybox_root, root, symlinks=True)
    network = Network(root / "network", f"pt6{random.randint(0, 10**7):07d}", random_subnet())
    runtime = Runtime(root, network, cgroup_base=v2_base)
    assert runtime.cgroups.unified
    try:
        yield Engine(ImageStore(root), network, runtime)
    finally:
        runtime.cleanup_all(timeout=1)
    assert not any(p.exists() for p in runtime.cgroups.parents)
    assert [g for g in child_groups(v2_base) if g.name.startswith("paas-")] == []


def spec(engine: Engine, *argv: str, **limits: object) -> ContainerSpec:
    image = engine.images.get("busybox")
    lowerdirs = tuple(str(p) for p in engine.images.lowerdirs(image))
    return ContainerSpec(name="v2", lowerdirs=lowerdirs, argv=argv, image=image.id,
                         network="none", **limits)  # type: ignore[arg-type]


def started(engine: Engine, script: str, **limits: object) -> str:
    container = engine.runtime.create(spec(engine, "sh", "-c", script, **limits))
    return engine.runtime.start(container.id).id


def log_has(engine: Engine, container_id: str, text: str) -> bool:
    return text in engine.runtime.logs_path(container_id).read_text()


def test_pids_limit_stops_a_fork_loop(engine: Engine) -> None:
    runtime = engine.runtime
    container_id = started(engine, FORK_LOOP, pids_limit=10)
    [group] = runtime.cgroups.paths(container_id)
    assert (group / "pids.max").read_text() == "10\n"
    wait_until(lambda: log_has(engine, container_id, "fork-loop-stopped"), what="the fork loop")
    assert log_has(engine, container_id, "can't fork")
    stats = runtime.stats(container_id)
    assert 2 <= stats.pids <= 10 and stats.pids_limit == 10
    assert stats.memory_bytes == 0 and stats.memory_limit is None  # memory stayed on v1
    runtime.stop(container_id, timeout=0)
    assert not group.exists() and not group.parent.exists()


def test_cpus_caps_a_busy_loop(engine: Engine) -> None:
    runtime = engine.runtime
    container_id = started(engine, BUSY_LOOP, cpus=0.5)
    [group] = runtime.cgroups.paths(container_id)
    assert (group / "cpu.max").read_text() == "50000 100000\n"
    wait_until(lambda: log_has(engine, container_id, "busy"), what="the busy loop")
    wait_until(lambda: _cpu_stat(group).get("nr_throttled", 0) > 0, what="the quota to throttle")
    before, start = runtime.stats(container_id).cpu_ns, time.monotonic_ns()
    time.sleep(1.0)
    used = runtime.stats(container_id).cpu_ns - before
    assert 0 < used < 0.8 * (time.monotonic_ns() - start)  # capped near half a core


def _cpu_stat(group: Path) -> dict[str, int]:
    lines = (group / "cpu.stat").read_text().splitlines()
    return {key: int(value) for key, value in (line.split() for line in lines)}


def test_container_and_exec_get_their_own_cgroup_namespace(engine: Engine) -> None:
    runtime = engine.runtime
    lines: list[str] = []
    result = runtime.run(spec(engine, "sh", "-c", "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup"),
                         lines.append)
    assert result.exit_code == 0
    assert "0::/" in lines  # its own group is the root of what it sees
    assert lines[-1] != os.readlink("/proc/self/ns/cgroup")
    container_id = started(engine, "echo up; sleep 60")
    wait_until(lambda: log_has(engine, container_id, "up"), what="the container")
    [group] = runtime.cgroups.paths(container_id)
    before = set(procs(group))
    with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as nothing:
        code = runtime.exec(container_id, ["cat", "/proc/self/cgroup"], stdin=nothing.fileno(),
                            stdout=out.fileno(), stderr=out.fileno())
        out.seek(0)
        text = out.read().decode()
    assert code == 0 and "0::/\n" in text
    assert set(procs(group)) == before  # it ran in the group, and left it


def test_a_memory_limit_is_refused_where_memory_is_not_on_v2(engine: Engine) -> None:
    container = engine.runtime.create(spec(engine, "true", memory_bytes=64 * MiB))
    with pytest.raises(ContainerError, match="memory controller"):
        engine.runtime.start(container.id)
    assert not any(p.exists() for p in engine.runtime.cgroups.parents)
