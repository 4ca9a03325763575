"""ps, logs, releases and run over real containers of our engine: an app's release recorded in
a real Store, its processes started from the scheduler's own process_spec (busybox image)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from clikit import Paas
from testkit import START_TIMEOUT_S, stop_process, wait_until

from paas.core.models import Release, ReleaseKind, ReleaseStatus
from paas.engine.engine import Engine
from paas.engine.runtime.launchspec import Bind
from paas.scheduler.inspect import human_duration
from paas.scheduler.local import process_spec
from paas.store import Store

PAAS = str(Path(sys.executable).with_name("paas"))
APP = "demo"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
PROCESSES = {
    "web": "echo web started; echo web to stderr >&2; exec sleep 1000",
    "worker": "i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo tick $i; done; exec sleep 1000",
    # Says `poked N` each time the test drops a file in /poke: a line printed later, on cue.
    "poker": "n=0; while true; do if [ -f /poke/go ]; then n=$((n+1)); echo poked $n; "
             "rm /poke/go; fi; sleep 0.05; done",
}


def record_release(store: Store, engine: Engine, config: dict[str, str] | None = None,
                   kind: ReleaseKind = ReleaseKind.DEPLOY) -> Release:
    if not any(app.name == APP for app in store.list_apps()):
        store.create_app(APP)
    store.replace_config(APP, config or {})  # what config:set does before the release
    release = store.add_release(APP, engine.images.get("busybox").id, PROCESSES, "abc1234def",
                                "deploy abc1234", config=config or {}, formation={"web": 1},
                                kind=kind, user="alice")
    store.finish_release(APP, release.version, ReleaseStatus.SUCCEEDED)
    return store.get_release(APP, release.version)


def start(engine: Engine, release: Release, process_type: str, index: int = 1,
          poke: Path | None = None) -> str:
    spec = process_spec(engine, release, process_type, index,
                        name=f"{APP}.{process_type}.{index}.v{release.version}")
    if poke is not None:
        spec = replace(spec, binds=(Bind(str(poke), "/poke"),))
    container = engine.runtime.create(spec)
    engine.runtime.start(container.id)
    return container.id


def log_has(engine: Engine, container_id: str, text: str) -> bool:
    return text in engine.runtime.logs_path(container_id).read_text()


@pytest.fixture
def paas(paas_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Paas:
    return Paas(paas_home, store, monkeypatch, capsys)


@pytest.fixture
def running(cli_engine: Engine, store: Store) -> Iterator[tuple[Engine, Release, dict[str, str]]]:
    """demo v1 with web.1 and worker.1 running, both done printing their first lines."""
    release = record_release(store, cli_engine, config={"GREETING": "hello 'world' = yes"})
    ids = {t: start(cli_engine, release, t) for t in ("web", "worker")}
    wait_until(lambda: log_has(cli_engine, ids["worker"], "tick 50"), what="worker's ticks")
    wait_until(lambda: log_has(cli_engine, ids["web"], "web to stderr"), what="web's lines")
    yield cli_engine, release, ids


def test_ps_shows_processes_by_type(running: tuple[Engine, Release, dict[str, str]],
                                    paas: Paas) -> None:
    engine, release, ids = running
    result = paas("ps", APP)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"=====> {APP} processes (v1)"
    assert lines[1] == "--- web: 1 running"
    ip = engine.runtime.get(ids["web"]).ip
    assert re.fullmatch(rf"web\.1: up \d+s \(v1\) {re.escape(str(ip))}:5000", lines[2]), lines
    # worker runs though the formation says 0 (the test started it): shown as it is
    assert lines[3] == "--- worker: 1 of 0 running"
    assert re.fullmatch(r"worker\.1: up \d+s \(v1\) [\d.]+:5000", lines[4]), lines

    data = json.loads(paas("ps", APP, "--format", "json").out)
    assert data["release"] == 1 and data["formation"] == {"web": 1, "poker": 0, "worker": 0}
    assert [(p["process"], p["status"], p["release"]) for p in data["processes"]] == [
        ("web.1", "running", 1), ("worker.1", "running", 1)]
    assert data["processes"][0]["memory_bytes"] > 0


def test_ps_after_a_crash_and_for_an_app_without_processes(cli_engine: Engine, store: Store,
                                                          paas: Paas) -> None:
    release = record_release(store, cli_engine)
    assert paas("ps", APP).out.splitlines()[1:] == ["--- web: 0 of 1 running"]
    crashing = replace(release, processes={"web": "exit 3"})
    container_id = start(cli_engine, crashing, "web")
    wait_until(lambda: cli_engine.runtime.get(container_id).status.value == "exited", what="exit")
    stopped = start(cli_engine, release, "web", 2)
    cli_engine.runtime.stop(stopped, timeout=0)  # by a user: not a crash
    lines = paas("ps", APP).out.splitlines()
    assert lines[1] == "--- web: 0 of 1 running"
    assert re.fullmatch(r"web\.1: crashed \d+s ago \(exit 3\) \(v1\)", lines[2]), lines
    assert re.fullmatch(r"web\.2: stopped \d+s ago \(v1\)", lines[3]), lines


def test_durations_read_like_herokus() -> None:
    assert [human_duration(s) for s in (0, 45, 125, 3600, 3700, 90000)] == [
        "0s", "45s", "2m", "1h", "1h1m", "1d1h"]


def test_ps_scale_without_counts_prints_the_formation(cli_engine: Engine, store: Store,
                                                      paas: Paas) -> None:
    record_release(store, cli_engine)
    store.set_formation(APP, {"worker": 2, "dropped": 3})  # a type an older Procfile had
    result = paas("ps:scale", APP)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"-----> Scaling for {APP}", "proctype: qty", "--------: ---", "web:      1",
        "poker:    0", "worker:   2"]
    assert json.loads(paas("ps:scale", APP, "--format", "json").out) == {
        "web": 1, "poker": 0, "worker": 2}
    bad = paas("ps:scale", APP, "web=two")
    assert bad.code == 2 and "TYPE=COUNT" in bad.err
    assert paas("ps:scale", APP, "Web=1").code == 1  # not a DNS label
    assert store.get_formation(APP) == {"worker": 2, "dropped": 3}


def test_logs_merges_processes_by_time_with_tail_and_type(
        running: tuple[Engine, Release, dict[str, str]], paas: Paas) -> None:
    result = paas("logs", APP)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 52  # 50 ticks + 2 web lines: fewer than the default 100
    pattern = re.compile(rf"({STAMP}) app\[(web|worker)\.1\]: (.*)")
    parsed = [pattern.fullmatch(line) for line in lines]
    assert all(parsed), lines
    stamps = [m.group(1) for m in parsed if m]
    assert stamps == sorted(stamps)
    worker = [m.group(3) for m in parsed if m and m.group(2) == "worker"]
    assert worker == [f"tick {i}" for i in range(1, 51)]
    web = [m.group(3) for m in parsed if m and m.group(2) == "web"]
    assert web == ["web started", "web to stderr"]

    last = paas("logs", APP, "-n", "3", "-p", "worker").out.splitlines()
    assert [line.split(": ", 1)[1] for line in last] == ["tick 48", "tick 49", "tick 50"]
    assert paas("logs", APP, "--ps", "web", "--quiet").out == "web started\nweb to stderr\n"
    assert paas("logs", APP, "-n", "0").out == ""
    assert paas("logs", APP, "-p", "nosuch").out == ""
    assert paas("logs", APP, "-n", "-1").code == 2


def test_logs_follow_sees_later_lines_and_later_containers_until_the_reader_leaves(
        cli_engine: Engine, store: Store, tmp_path: Path) -> None:
    release = record_release(store, cli_engine)
    first = start(cli_engine, release, "poker", 1, poke=tmp_path)
    wait_until(lambda: cli_engine.runtime.get(first).status.value == "running", what="poker.1")
    follower = subprocess.Popen([PAAS, "logs", APP, "-t", "-q"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        reader = LineReader(follower)
        (tmp_path / "go").touch()
        assert reader.next_line() == "poked 1"  # an existing container, a line printed later
        second = tmp_path / "second"
        second.mkdir()
        start(cli_engine, release, "poker", 2, poke=second)  # a container that appears later
        (second / "go").touch()
        assert reader.next_line() == "poked 1"
        (tmp_path / "go").touch()
        assert reader.next_line() == "poked 2"
        assert follower.poll() is None  # still following
        follower.stdout.close()  # type: ignore[union-attr]  # the reader goes away
        assert follower.wait(START_TIMEOUT_S) == 0
        assert follower.stderr.read() == b""  # type: ignore[union-attr]  # no broken-pipe noise
    finally:
        stop_process(follower)


class LineReader:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.fd = proc.stdout.fileno()  # type: ignore[union-attr]
        self.buffer = b""

    def next_line(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"no line in {self.buffer!r}")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise AssertionError(f"EOF after {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def test_run_passes_exit_status_config_and_env(cli_engine: Engine, store: Store,
                                               paas: Paas) -> None:
    record_release(store, cli_engine, config={"GREETING": "hello 'world' = yes", "OLD": "gone"})
    store.update_config(APP, {"LATER": "set with --no-restart"}, ["OLD"])
    result = paas("run", "-e", "EXTRA=a b", APP,
                  'echo "$GREETING|$LATER|${OLD-unset}|$EXTRA|$DYNO|$PORT"; exit 3')
    assert result.code == 3, result.err
    assert result.out == "hello 'world' = yes|set with --no-restart|unset|a b|run.1|5000\n"
    # the words make one shell command line, as over ssh: quotes for the shell pass through
    words = paas("run", APP, "echo", "$DYNO", "'a  b'", "'$HOME'")
    assert (words.code, words.out) == (0, "run.1 a  b $HOME\n")
    assert not [c.name for c in cli_engine.runtime.list()]  # removed after each run
    kept = paas("logs", APP, "-p", "run")  # their output stays in the app's log
    assert re.fullmatch(rf"{STAMP} app\[run\.1\]: hello 'world' = yes\|.*\n{STAMP} app\[run\.1\]: "
                        r"run\.1 a  b \$HOME\n", kept.out), kept.out
    missing = paas("run", APP, "nosuchcommand")
    assert missing.code == 127


def test_run_errors(cli_engine: Engine, store: Store, paas: Paas) -> None:
    store.create_app(APP)
    result = paas("run", APP, "true")
    assert result.code == 1 and "no running release" in result.err
    assert paas("run", APP).code == 2  # no command
    assert paas("run", "-e", "1BAD=x", APP, "true").code == 1
    assert paas("run", "nosuchapp", "true").code == 1
    nothing = paas("rollback", APP)
    assert nothing.code == 1 and "no live release" in nothing.err, nothing
    assert paas("rollback", APP, "version-one").code == 2
    assert paas("releases", APP).out.splitlines()[0] == f"=====> {APP} releases"


def test_run_streams_stdin_and_stderr_apart(cli_engine: Engine, store: Store) -> None:
    record_release(store, cli_engine)
    done = subprocess.run([PAAS, "run", APP, "cat; echo to-stderr >&2; exit 5"],
                          input=b"from stdin\n", capture_output=True, timeout=START_TIMEOUT_S)
    assert (done.returncode, done.stdout, done.stderr) == (5, b"from stdin\n", b"to-stderr\n")
    assert not cli_engine.runtime.list()


def test_run_with_a_terminal(cli_engine: Engine, store: Store) -> None:
    import fcntl
    import struct
    import termios

    record_release(store, cli_engine)
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen([PAAS, "run", APP, "tty; stty size; read x; echo got $x; exit 4"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        seen = read_until(master, b"33 101")
        assert re.search(rb"/dev/pts/\d+", seen), seen
        os.write(master, b"typed\r")
        assert b"got typed" in read_until(master, b"got typed")
        assert proc.wait(START_TIMEOUT_S) == 4
        assert not cli_engine.runtime.list()
    finally:
        stop_process(proc)
        os.close(master)


@pytest.mark.parametrize("with_tty", [True, False])
def test_a_hangup_ends_the_run_and_removes_its_container(cli_engine: Engine, store: Store,
                                                         with_tty: bool) -> None:
    """What the SSH server does when the client goes away: SIGTERM to the CLI."""
    record_release(store, cli_engine)
    master, slave = os.openpty()
    stdin = slave if with_tty else subprocess.PIPE
    proc = subprocess.Popen([PAAS, "run", APP, "echo started; exec sleep 1000"], stdin=stdin,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        read_until(master, b"started")
        assert [c.name for c in cli_engine.runtime.list()] == [f"{APP}.run.1"]
        ps = subprocess.run([PAAS, "ps", APP], capture_output=True, text=True, timeout=60).stdout
        assert re.search(r"^--- run: 1 one-off\nrun\.1: up \d+s \(v1\) [\d.]+:5000$", ps, re.M), ps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(START_TIMEOUT_S) != 0
        assert not cli_engine.runtime.list()
    finally:
        stop_process(proc)
        os.close(master)


def read_until(fd: int, wanted: bytes) -> bytes:
    seen = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no {wanted!r} in {seen!r}")
        seen += os.read(fd, 4096)
    return seen


def test_releases_list_info_and_errors(cli_engine: Engine, store: Store,
                                       paas: Paas) -> None:
    record_release(store, cli_engine, config={"A": "1"})
    record_release(store, cli_engine, config={"A": "2", "B": "x"}, kind=ReleaseKind.CONFIG)
    failed = store.add_release(APP, "sha256:0", {}, "", "deploy bad", user="bob")
    store.finish_release(APP, failed.version, ReleaseStatus.FAILED, "web crashed")
    result = paas("releases", APP)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"=====> {APP} releases - current: v2"
    assert [line.split()[:2] for line in lines[2:]] == [["v3", "deploy"], ["*", "v2"], ["v1", "deploy"]]
    assert "failed" in lines[2] and "bob" in lines[2] and "succeeded" in lines[3]
    data = json.loads(paas("releases", APP, "--format", "json").out)
    assert [(r["version"], r["kind"], r["status"], r["current"]) for r in data] == [
        (3, "deploy", "failed", False), (2, "config", "succeeded", True),
        (1, "deploy", "succeeded", False)]
    assert len(json.loads(paas("releases", APP, "-n", "1", "--format", "json").out)) == 1

    info = paas("releases:info", APP, "v2")
    assert info.code == 0, info.err
    assert info.out.splitlines()[0] == f"=====> {APP} v2 (current)"
    assert "config vars: A, B" in info.out and "formation:   web=1" in info.out
    detail = json.loads(paas("releases:info", APP, "3", "--format", "json").out)
    assert detail["reason"] == "web crashed" and detail["config_keys"] == []
    assert paas("releases:info", APP, "v9").code == 1
    assert paas("releases:info", APP, "vx").code == 2


def test_commands_need_membership(cli_engine: Engine, store: Store, paas: Paas) -> None:
    record_release(store, cli_engine)
    paas.add_key("mallory")
    for argv in (["ps", APP], ["logs", APP], ["releases", APP], ["releases:info", APP, "v1"],
                 ["run", APP, "true"], ["rollback", APP], ["ps:scale", APP, "web=2"],
                 ["ps:stop", APP], ["ps:restart", APP], ["ps:start", APP]):
        result = paas(*argv, user="mallory")
        assert result.code == 1 and "permission denied" in result.err, argv
    assert not cli_engine.runtime.list()
    assert [r.version for r in store.list_releases(APP)] == [1]
    assert store.get_formation(APP) == {}
