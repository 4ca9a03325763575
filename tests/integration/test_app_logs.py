"""An app's merged log (scheduler.logs) over real containers of our engine; `logs -t`
following a real app through a deploy, a scale and a rollback (real pipeline and nginx); and
`run` and `logs -t` over SSH (real OpenSSH client, our server): a pty, exit statuses, and a
client that goes away."""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploykit import WEB, WORKER, Rig, rig_fixture  # noqa: F401  (the `rig` fixture)
from testkit import (
    START_TIMEOUT_S,
    SSHTarget,
    busybox_spec,
    child_env,
    free_port,
    random_subnet,
    scratch_engine,
    stop_process,
    wait_until,
)

from paas.config import Settings
from paas.core.models import ReleaseStatus
from paas.engine.baseimages import build_busybox
from paas.engine.engine import Engine
from paas.engine.runtime.launchspec import Bind
from paas.scheduler.local import LABEL_APP, LABEL_INDEX, LABEL_PROCESS, LABEL_RELEASE
from paas.scheduler.logarchive import archive_dir, keep, kept_logs
from paas.scheduler.logs import AppLogLine, follow_app_logs, read_app_logs
from paas.store import Store

PAAS = str(Path(sys.executable).with_name("paas"))
APP = "logged"
# Prints `burst B line L` 30 times each time the test drops a file in /poke.
BURSTS = ("b=0; while true; do if [ -f /poke/go ]; then rm /poke/go; b=$((b+1)); l=0; "
          "while [ $l -lt 30 ]; do l=$((l+1)); echo \"burst $b line $l\"; done; fi; "
          "sleep 0.05; done")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with scratch_engine(tmp_path / "engine") as eng:
        yield eng


def start(engine: Engine, process_type: str, index: int, script: str, poke: Path | None = None,
          **extra: object) -> str:
    labels = {LABEL_APP: APP, LABEL_PROCESS: process_type, LABEL_INDEX: str(index),
              LABEL_RELEASE: "1"}
    binds = (Bind(str(poke), "/poke"),) if poke else ()
    spec = busybox_spec(engine, "sh", "-c", script, name=f"{APP}.{process_type}.{index}",
                        labels=labels, binds=binds, **extra)
    container = engine.runtime.create(spec)
    engine.runtime.start(container.id)
    return container.id


def logged(engine: Engine, container_id: str, text: str) -> bool:
    try:
        return text in engine.runtime.logs_path(container_id).read_text()
    except FileNotFoundError:
        return False


class Collector:
    """Pulls lines from a follow generator, as fast as they come, up to a wanted one."""

    def __init__(self, lines: Iterator[AppLogLine]) -> None:
        self.lines = lines
        self.seen: list[str] = []

    def until(self, text: str) -> list[str]:
        start = len(self.seen)
        for line in self.lines:
            self.seen.append(f"{line.process} {line.text}")
            if line.text == text:
                return self.seen[start:]
        raise AssertionError(f"follow ended before {text!r}: {self.seen[start:]}")


def test_follow_from_n0_then_new_lines_of_old_and_new_containers(engine: Engine,
                                                                 tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    old = start(engine, "worker", 1, "echo history; " + BURSTS, poke=first)
    wait_until(lambda: logged(engine, old, "history"), what="history")
    stopped = []
    lines = follow_app_logs(engine, APP, tail=0, stop=lambda: bool(stopped), poll=0.05, rescan=0.1)
    collector = Collector(lines)
    (first / "go").touch()
    got = collector.until("burst 1 line 30")
    assert got == [f"worker.1 burst 1 line {n}" for n in range(1, 31)]  # no history with -n 0
    start(engine, "clock", 1, BURSTS, poke=second)
    (second / "go").touch()
    assert collector.until("burst 1 line 30") == [f"clock.1 burst 1 line {n}" for n in range(1, 31)]
    stopped.append(True)
    assert list(lines) == []  # stop() ends it, and its threads with it
    assert not [t for t in threading_names() if t.startswith("paas-logs-")]


def threading_names() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate()]


def test_follow_across_rotations_and_past_a_removed_container(engine: Engine,
                                                              tmp_path: Path) -> None:
    container = start(engine, "worker", 1, BURSTS, poke=tmp_path, log_max_bytes=4096, log_files=3)
    lines = follow_app_logs(engine, APP, tail=None, poll=0.05, rescan=0.1)
    collector = Collector(lines)
    for burst in range(1, 7):  # ~2 KB each: the log rotates every other burst
        (tmp_path / "go").touch()
        got = collector.until(f"burst {burst} line 30")
        assert got == [f"worker.1 burst {burst} line {n}" for n in range(1, 31)], burst
    log_dir = engine.runtime.store.dir(container)
    assert (log_dir / "container.log.1").exists()  # it did rotate
    engine.runtime.remove(container, timeout=0)
    wait_until(lambda: not [n for n in threading_names() if n == "paas-logs-worker.1"],
               what="the removed container's follower to end")
    lines.close()


def test_read_merges_by_time_and_a_tail_inside_one_chunk_is_not_shown_twice(
        engine: Engine, tmp_path: Path) -> None:
    # 30 lines in one write: the init stamps them all with one time
    burst = start(engine, "worker", 1, BURSTS, poke=tmp_path)
    (tmp_path / "go").touch()
    wait_until(lambda: logged(engine, burst, "burst 1 line 30"), what="the burst")
    other = start(engine, "web", 1, "echo web line; exec sleep 1000")
    wait_until(lambda: logged(engine, other, "web line"), what="web")
    merged = read_app_logs(engine, APP, tail=None)
    assert [line.text for line in merged][-1] == "web line"  # started later: its line is last
    assert [line.time for line in merged] == sorted(line.time for line in merged)
    assert [line.text for line in read_app_logs(engine, APP, tail=2, process_type="worker")] == [
        "burst 1 line 29", "burst 1 line 30"]
    lines = follow_app_logs(engine, APP, tail=5, process_type="worker", poll=0.05)
    collector = Collector(lines)
    assert collector.until("burst 1 line 30") == [f"worker.1 burst 1 line {n}" for n in range(26, 31)]
    (tmp_path / "go").touch()
    assert collector.until("burst 2 line 30") == [f"worker.1 burst 2 line {n}" for n in range(1, 31)]
    lines.close()


def test_retired_containers_logs_are_kept_bounded_and_merged(engine: Engine, tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    archive = archive_dir(logs_dir, APP)
    for release in (1, 2, 3):
        container = start(engine, "web", 1, f"echo release {release}; exec sleep 1000")
        wait_until(lambda c=container: logged(engine, c, "release"), what="its line")
        engine.runtime.stop(container, timeout=0)
        assert keep(engine, container, logs_dir, limit=2)
        engine.runtime.remove(container, timeout=0)
    assert len(kept_logs(archive)) == 2  # the oldest went
    live = start(engine, "worker", 1, "echo live worker; exec sleep 1000")
    wait_until(lambda: logged(engine, live, "live worker"), what="the live line")
    lines = read_app_logs(engine, APP, archive=archive)
    assert [(ln.process, ln.text) for ln in lines] == [
        ("web.1", "release 2"), ("web.1", "release 3"), ("worker.1", "live worker")]
    assert [ln.text for ln in read_app_logs(engine, APP, archive=archive, process_type="web",
                                            tail=1)] == ["release 3"]
    follow = follow_app_logs(engine, APP, archive=archive, tail=2, poll=0.05)
    assert [next(follow).text, next(follow).text] == ["release 3", "live worker"]
    follow.close()
    assert not keep(engine, "0" * 32, logs_dir)  # gone already: nothing kept, no error


# -- the real thing: pipeline, nginx, the CLI ------------------------------------------------

class Follower:
    """`paas logs APP -t` in a subprocess; lines read as they come."""

    def __init__(self, deploy_rig: Rig, *args: str) -> None:
        self.proc = subprocess.Popen([PAAS, "logs", *args, "-t"], env=child_env(deploy_rig.settings),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""

    def until(self, text: str) -> list[str]:
        """Lines up to the first that ends with `text`."""
        assert self.proc.stdout is not None
        found: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while not found or not found[-1].endswith(text):
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                ready = left > 0 and select.select([self.proc.stdout], [], [], left)[0]
                chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
                if not chunk:
                    raise AssertionError(f"no line ending {text!r} in {found}, {self.buffer!r}")
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\n")
            found.append(line.decode())
        return found


def run_cli(deploy_rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PAAS, *args], env=child_env(deploy_rig.settings), capture_output=True,
                          text=True, timeout=120)


def test_logs_follow_a_real_app_through_config_scale_and_rollback(rig: Rig) -> None:
    app = "followed"
    rig.store.create_app(app)
    rig.store.update_config(app, {"GREETING": "hi"}, [])
    rig.push(app, {"web": f"echo web $GREETING up; {WEB}", "worker": WORKER})
    follower = Follower(rig, app)
    try:
        assert follower.until("web hi up")[-1].endswith("app[web.1]: web hi up")
        done = run_cli(rig, "config:set", app, "GREETING=hello")
        assert done.returncode == 0, done.stderr
        assert "app[web.1]: web hello up" in follower.until("web hello up")[-1]  # the new web.1
        kept = run_cli(rig, "logs", app, "-p", "web", "-q").stdout.splitlines()
        assert kept.index("web hi up") < kept.index("web hello up"), kept  # v1's retired web.1 too
        done = run_cli(rig, "ps:scale", app, "worker=1", "web=2")
        assert done.returncode == 0, done.stderr
        seen = follower.until("worker hello up")
        assert "app[worker.1]: worker hello up" in seen[-1]

        ps = run_cli(rig, "ps", app)
        assert "--- web: 2 running" in ps.stdout and "--- worker: 1 running" in ps.stdout, ps.stdout

        releases = run_cli(rig, "releases", app)
        assert releases.stdout.splitlines()[0].endswith("current: v3"), releases.stdout
        rolled = run_cli(rig, "rollback", app, "v1")
        assert rolled.returncode == 0, rolled.stderr
        assert rolled.stdout.splitlines()[-1] == "-----> Rolled back: rollback to v1, now v4", rolled.stdout
        assert "app[web.1]: web hi up" in follower.until("web hi up")[-1]  # v1's config again
        info = run_cli(rig, "releases:info", app, "v4", "--format", "json")
        assert '"kind": "rollback"' in info.stdout, info.stdout
        assert follower.proc.poll() is None
    finally:
        stop_process(follower.proc)


# -- over SSH: the real OpenSSH client and our server ----------------------------------------

@pytest.fixture
def settings(paas_home: Path) -> Settings:
    """This module's own subnet: the SSH server's commands open the engine from it."""
    return Settings(home=paas_home, ssh_port=free_port(), subnet=random_subnet(), check_wait=0.0,
                    wait_to_retire=0.0)


@pytest.fixture
def released(settings: Settings, store: Store) -> Iterator[Engine]:
    """demo v1 (busybox) recorded live, with a config var; no process runs."""
    engine = Engine.open(settings.engine_root, settings.bridge_name, settings.subnet)
    try:
        build_busybox(engine.images, lambda line: None)
        store.create_app("demo")
        store.replace_config("demo", {"G": "hi 'there'"})
        release = store.add_release("demo", engine.images.get("busybox").id, {"web": BURSTS},
                                    "abc1234", "deploy abc1234", config={"G": "hi 'there'"})
        store.finish_release("demo", release.version, ReleaseStatus.SUCCEEDED)
        yield engine
    finally:
        engine.runtime.cleanup_all(timeout=1)


def ssh_run(ssh: SSHTarget, *words: str, tty: bool = False,
            stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    argv = ssh.ssh_argv(*words)
    if tty:
        argv.insert(1, "-tt")
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60)


def test_run_over_ssh_with_and_without_a_pty(released: Engine, ssh_server: SSHTarget) -> None:
    with_pty = ssh_run(ssh_server, "run", "demo", 'tty; echo "$G"; exit 4', tty=True)
    assert with_pty.returncode == 4, with_pty
    assert re.fullmatch(rb"/dev/pts/\d+\r\nhi 'there'\r\n", with_pty.stdout), with_pty.stdout
    piped = ssh_run(ssh_server, "run", "demo", "cat; echo to-stderr >&2; exit 3", stdin=b"in\n")
    assert (piped.returncode, piped.stdout, piped.stderr) == (3, b"in\n", b"to-stderr\n")
    assert not released.runtime.list()
    kept = ssh_run(ssh_server, "logs", "demo", "-p", "run", "-q")
    assert kept.stdout.decode().splitlines()[-2:] == ["in", "to-stderr"]


@pytest.mark.parametrize("tty", [True, False])
def test_a_client_that_goes_away_ends_run_and_logs(released: Engine, ssh_server: SSHTarget,
                                                   tty: bool) -> None:
    argv = ssh_server.ssh_argv("run", "demo", "echo started; exec sleep 1000")
    follow = ssh_server.ssh_argv("logs", "demo", "-t", "-q")
    if tty:
        argv.insert(1, "-tt")
    clients = [subprocess.Popen(a, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL) for a in (argv, follow)]
    try:
        assert clients[0].stdout.readline().strip() == b"started"  # type: ignore[union-attr]
        assert clients[1].stdout.readline().strip() == b"started"  # type: ignore[union-attr]
        assert [c.name for c in released.runtime.list()] == ["demo.run.1"]
        for client in clients:
            client.kill()  # the connection drops
            client.wait()
        wait_until(lambda: not released.runtime.list(), what="the one-off to be removed")
        wait_until(lambda: not server_children(ssh_server.pid), what="the server's commands to end")
    finally:
        for client in clients:
            stop_process(client)


def server_children(pid: int) -> list[str]:
    """Command lines of the SSH server's child processes (its commands)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    lines = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            lines.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines
