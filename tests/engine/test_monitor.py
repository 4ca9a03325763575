"""The engine monitor against real containers: restart policies with Docker's back-off, a
user's stop, `--rm`, its lock, and bringing containers back after a (played) reboot.

The monitor runs as its own process, as in production; a reboot is played honestly: the
containers' processes are SIGKILLed while no monitor runs, then a monitor is handed a new
boot id, so it must treat every recorded process as gone.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import free_port, http_get, stop_process, wait_until

from paas.engine.containers import Container, ContainerSpec, ContainerStatus, PortMapping
from paas.engine.engine import Engine
from paas.engine.runtime import monitor, monitorlock, process
from paas.engine.runtime.engine import HOST_RESTARTED
from paas.engine.runtime.restart import FIRST_DELAY_S, RestartPolicy, next_delay
from paas.errors import ContainerError

SERVE = """
import sys
from pathlib import Path
from paas.engine.network import Network
from paas.engine.runtime import Runtime
from paas.engine.runtime.monitor import serve
root, bridge, subnet, boot = sys.argv[1:5]
runtime = Runtime(Path(root), Network(Path(root) / "network", bridge, subnet), boot_id=boot or None)
serve(runtime, lambda line: print(line, flush=True))
"""
HTTPD = 'mkdir -p /w && echo "hello from $0" > /w/index.html && exec httpd -f -p 80 -h /w'
SETTLE_S = 1.5  # longer than any back-off these tests reach: a restart would have happened
WAIT_S = 30.0


@dataclass
class Monitor:
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def start_monitor(engine: Engine, log: Path, boot_id: str = "") -> Monitor:
    root, net = engine.runtime.root, engine.network
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(root), net.bridge_name, str(net.subnet), boot_id],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
        )
    wait_until(lambda: monitorlock.holder(root) is not None or proc.poll() is not None,
               WAIT_S, "the monitor's lock")
    assert proc.poll() is None, log.read_text()
    return Monitor(proc, log)


@pytest.fixture
def watched(busybox_engine: Engine, tmp_path: Path) -> Iterator[Monitor]:
    mon = start_monitor(busybox_engine, tmp_path / "monitor.log")
    try:
        yield mon
    finally:
        stop_process(mon.proc)
        print(mon.log.read_text())


def spec(engine: Engine, *argv: str, name: str = "t", **kwargs: object) -> ContainerSpec:
    lowerdirs = tuple(str(d) for d in engine.images.lowerdirs(engine.images.get("busybox")))
    kwargs.setdefault("network", "none")
    return ContainerSpec(name=name, lowerdirs=lowerdirs, argv=argv, **kwargs)  # type: ignore[arg-type]


def started(engine: Engine, *argv: str, **kwargs: object) -> str:
    return engine.runtime.start(engine.runtime.create(spec(engine, *argv, **kwargs)).id).id


def runs(engine: Engine, container_id: str) -> int:
    """How many times it ran: each run writes one `run` line to the log, kept across runs."""
    return engine.runtime.logs_path(container_id).read_text().count(" run\n")


def until(engine: Engine, container_id: str, check: Callable[[Container], bool], what: str) -> Container:
    wait_until(lambda: check(engine.runtime.get(container_id)), WAIT_S, what)
    return engine.runtime.get(container_id)


def finished(c: Container) -> bool:
    """Its end is recorded (by the monitor: nothing else looks at it in these tests)."""
    return c.status is ContainerStatus.EXITED and c.state.finished_at is not None




def test_policies_parse_and_decide() -> None:
    assert str(RestartPolicy.parse("on-failure:3")) == "on-failure:3"
    for bad in ("sometimes", "always:2", "on-failure:x", "on-failure:-1", ""):
        with pytest.raises(ContainerError, match="restart policy"):
            RestartPolicy.parse(bad)
    on_failure = RestartPolicy.parse("on-failure:2")
    assert on_failure.should_restart(1, 1, False) and not on_failure.should_restart(1, 2, False)
    assert not on_failure.should_restart(0, 0, False)
    unless = RestartPolicy.parse("unless-stopped")
    assert not unless.should_restart(1, 0, True) and not unless.should_restart(1, 0, True, True)
    assert RestartPolicy.parse("always").should_restart(0, 0, True, monitor_starting=True)
    assert [next_delay(None, 0), next_delay(0.1, 1), next_delay(40, 1), next_delay(0.8, 10)] == [
        FIRST_DELAY_S, 0.2, 60, FIRST_DELAY_S]
    with pytest.raises(ContainerError, match="conflict"):
        ContainerSpec("t", ("/x",), ("true",), restart="always", auto_remove=True)


def test_on_failure_2_gives_exactly_three_runs(busybox_engine: Engine, watched: Monitor) -> None:
    cid = started(busybox_engine, "sh", "-c", "echo run; exit 3", restart="on-failure:2")
    until(busybox_engine, cid, lambda c: c.state.restart_count == 2 and finished(c), "2 restarts")
    time.sleep(SETTLE_S)
    container = busybox_engine.runtime.get(cid)
    assert (container.status, container.exit_code, container.state.restart_count) == (
        ContainerStatus.EXITED, 3, 2)
    assert runs(busybox_engine, cid) == 3


def test_failed_starts_count_as_restarts(busybox_engine: Engine, watched: Monitor) -> None:
    runtime = busybox_engine.runtime
    cid = runtime.create(spec(busybox_engine, "no-such-command", restart="on-failure:1")).id
    with pytest.raises(ContainerError, match="no-such-command"):
        runtime.start(cid)
    until(busybox_engine, cid, lambda c: c.state.restart_count == 1 and finished(c), "a retry")
    time.sleep(SETTLE_S)
    container = runtime.get(cid)
    assert (container.state.restart_count, container.exit_code) == (1, 127)
    assert sum("restart failed" in line for line in watched.lines()) == 1


def test_always_restarts_after_exit_0_and_no_does_not(
    busybox_engine: Engine, watched: Monitor
) -> None:
    always = started(busybox_engine, "sh", "-c", "echo run; exit 0", restart="always", name="a")
    never = started(busybox_engine, "sh", "-c", "echo run; exit 1", name="n")
    until(busybox_engine, always, lambda c: c.state.restart_count >= 2, "restarts of always")
    # the count is recorded as a run starts, its "run" line a moment later
    wait_until(lambda: runs(busybox_engine, always) >= 3, WAIT_S, "the third run's output")
    until(busybox_engine, never, finished, "the monitor to record the exit")
    time.sleep(SETTLE_S)
    container = busybox_engine.runtime.get(never)
    assert (container.exit_code, container.state.restart_count, runs(busybox_engine, never)) == (1, 0, 1)


def test_a_users_stop_or_kill_is_respected(busybox_engine: Engine, watched: Monitor) -> None:
    runtime = busybox_engine.runtime
    stopped = started(busybox_engine, "sleep", "600", restart="always", name="s")
    killed = started(busybox_engine, "sleep", "600", restart="unless-stopped", name="k")
    crashed = started(busybox_engine, "sleep", "600", restart="unless-stopped", name="c")
    runtime.stop(stopped, timeout=1)
    assert runtime.kill(killed, signal.SIGKILL)
    ref = runtime.get(crashed).state
    assert process.send_signal(process.ProcessRef(ref.pid or 0, ref.starttime or 0), signal.SIGKILL)
    until(busybox_engine, crashed, lambda c: c.state.restart_count == 1 and c.status == "running",
          "the crashed one back")
    until(busybox_engine, killed, finished, "the killed one recorded")
    time.sleep(SETTLE_S)
    for cid in (stopped, killed):
        container = runtime.get(cid)
        assert container.status is ContainerStatus.EXITED and container.state.stopped_by_user
        assert container.state.restart_count == 0
    assert runtime.start(stopped).status is ContainerStatus.RUNNING  # a user's start: forgotten
    assert not runtime.get(stopped).state.stopped_by_user


def test_back_off_doubles(busybox_engine: Engine, watched: Monitor) -> None:
    cid = started(busybox_engine, "sh", "-c", "echo run; exit 1", restart="always", name="b")
    until(busybox_engine, cid, lambda c: c.state.restart_count >= 4, "four restarts")
    busybox_engine.runtime.stop(cid, timeout=0)
    delays = [float(d) for d in re.findall(r"b: exited with 1; restart \d+ in ([\d.]+)s",
                                           watched.log.read_text())]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]


def test_rm_containers_are_removed_by_the_monitor(busybox_engine: Engine, watched: Monitor) -> None:
    cid = started(busybox_engine, "sh", "-c", "echo run; exit 2", auto_remove=True)
    wait_until(lambda: cid not in busybox_engine.runtime.store.ids(), WAIT_S, "removal")
    wait_until(lambda: any("removed (--rm)" in line for line in watched.lines()), WAIT_S, "log")


def test_one_monitor_per_root_stopped_by_cleanup(busybox_engine: Engine, watched: Monitor) -> None:
    runtime = busybox_engine.runtime
    holder = monitorlock.holder(runtime.root)
    assert holder is not None and holder.pid == watched.proc.pid
    assert not monitor.serve(runtime, lambda line: None)  # the lock is taken: returns at once
    net = busybox_engine.network
    second = subprocess.run(
        [sys.executable, "-c", SERVE, str(runtime.root), net.bridge_name, str(net.subnet), ""],
        capture_output=True, text=True, timeout=WAIT_S,
    )
    assert second.returncode == 0 and "started" not in second.stdout, second.stdout
    assert monitorlock.holder(runtime.root) == holder
    runtime.cleanup_all(timeout=1)
    assert watched.proc.wait(WAIT_S) == -signal.SIGTERM or watched.proc.returncode == 0
    assert monitorlock.holder(runtime.root) is None


def test_reboot_brings_back_what_its_policy_says(
    busybox_engine: Engine, tmp_path: Path
) -> None:
    runtime = busybox_engine.runtime
    port = free_port()
    web = started(busybox_engine, "sh", "-c", HTTPD, "web", restart="always", name="web",
                  network="bridge", ports=(PortMapping(port, 80),))
    assert http_get("127.0.0.1", port, WAIT_S) == "hello from web\n"
    policies = {"unless": "unless-stopped", "fails": "on-failure:1", "plain": "no",
                "manual": "unless-stopped", "always-manual": "always"}
    ids = {name: started(busybox_engine, "sleep", "600", restart=policy, name=name)
           for name, policy in policies.items()}
    runtime.stop(ids["manual"], timeout=0)
    runtime.stop(ids["always-manual"], timeout=0)
    for cid in (web, ids["unless"], ids["fails"], ids["plain"]):  # the host goes down
        state = runtime.get(cid).state
        assert process.send_signal(process.ProcessRef(state.pid or 0, state.starttime or 0),
                                   signal.SIGKILL)
        process.wait_exit(process.ProcessRef(state.pid or 0, state.starttime or 0), WAIT_S)
    mon = start_monitor(busybox_engine, tmp_path / "monitor.log", boot_id="another-boot")
    try:
        for cid in (web, ids["unless"], ids["fails"], ids["always-manual"]):
            until(busybox_engine, cid, lambda c: c.status is ContainerStatus.RUNNING
                  and c.state.boot_id == "another-boot", f"{cid} back in this boot")
        assert http_get("127.0.0.1", port, WAIT_S) == "hello from web\n"
        for name in ("plain", "manual"):
            container = until(busybox_engine, ids[name], finished, f"{name} recorded")
            assert container.status is ContainerStatus.EXITED
        plain = runtime.get(ids["plain"]).state
        assert (plain.exit_code, plain.error) == (137, HOST_RESTARTED)  # ended unobserved: killed
        assert plain.pid is None  # that pid names some process of the new boot, if any: never ours
    finally:
        stop_process(mon.proc)
        print(mon.log.read_text())
