"""The container's PID 1 (shim.c) on real containers: its records and rotation against the
Python reference (logwriter), signal forwarding, exit codes, start failures; and its build."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from testkit import busybox_spec as base_spec
from testkit import wait_until

from paas.engine.containers import Bind, ContainerSpec
from paas.engine.engine import Engine
from paas.engine.runtime import logs, shim
from paas.engine.runtime.launchspec import ERROR_FILE, EXIT_CODE_FILE, LOG_FILE
from paas.engine.runtime.logwriter import MAX_LINE, LineSplitter, LogWriter, format_time
from paas.engine.runtime.process import ProcessRef, send_signal
from paas.errors import ContainerError

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", re.MULTILINE)
FIXED = format_time(0).encode()
# Lines around the cut (MAX_LINE), empty ones, \r, bytes that are not UTF-8, no final newline.
TRICKY = b"".join((
    b"first\n\n\n",
    b"a" * MAX_LINE + b"\n",
    b"b" * (MAX_LINE + 1) + b"\n",
    b"c" * (3 * MAX_LINE + 7) + b"\n",
    b"carriage\r return\n\xff\xfe not utf-8\n",
    b"d" * (2 * MAX_LINE) + b"\n",
    b"no newline at the end",
))
# 1,100 writes of 16 bytes: a line that crosses MAX_LINE a few bytes at a time.
SMALL_WRITES = "i=0; while [ $i -lt 1100 ]; do printf 0123456789abcdef; i=$((i+1)); done"


def busybox_spec(engine: Engine, script: str, **extra: Any) -> ContainerSpec:
    return base_spec(engine, "sh", "-c", script, name="shim", **extra)


def start(engine: Engine, script: str, **extra: Any) -> str:
    container = engine.runtime.create(busybox_spec(engine, script, **extra))
    engine.runtime.start(container.id)
    return container.id


def run_detached(engine: Engine, script: str, **extra: Any) -> tuple[int | None, Path]:
    """Start it as the deploy pipeline does (the shim writes the log); exit code and dir."""
    container_id = start(engine, script, **extra)
    return engine.runtime.wait(container_id, timeout=20).exit_code, engine.runtime.store.dir(container_id)


def unstamped(records: bytes) -> bytes:
    return STAMP.sub(FIXED + b" ", records)


def reference(stream: str, data: bytes) -> bytes:
    splitter = LineSplitter(stream)
    return splitter.feed(data, FIXED) + splitter.finish(FIXED)


def stream_records(records: bytes, stream: str) -> bytes:
    tag = f" {stream} ".encode()
    return b"".join(line + b"\n" for line in records.split(b"\n") if line[30:38] == tag)


def tricky_script(tmp_path: Path) -> tuple[str, tuple[Bind, ...]]:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "out").write_bytes(TRICKY)
    (tmp_path / "data" / "err").write_bytes(TRICKY[::-1])
    script = f"cat /data/err >&2; {SMALL_WRITES}; echo; cat /data/out"
    return script, (Bind(str(tmp_path / "data"), "/data", readonly=True),)


def expected_stdout() -> bytes:
    return reference("stdout", b"0123456789abcdef" * 1100 + b"\n" + TRICKY)


def test_records_match_the_python_splitter(busybox_engine: Engine, tmp_path: Path) -> None:
    script, binds = tricky_script(tmp_path)
    code, directory = run_detached(busybox_engine, script, binds=binds)
    raw = (directory / LOG_FILE).read_bytes()
    assert code == 0
    assert unstamped(stream_records(raw, "stdout")) == expected_stdout()
    assert unstamped(stream_records(raw, "stderr")) == reference("stderr", TRICKY[::-1])
    stamps = STAMP.findall(raw)
    assert len(stamps) == raw.count(b"\n") and stamps == sorted(stamps)


def test_records_through_runtime_run_match_too(busybox_engine: Engine, tmp_path: Path) -> None:
    script, binds = tricky_script(tmp_path)
    seen: list[str] = []
    result = busybox_engine.runtime.run(busybox_spec(busybox_engine, script, binds=binds), seen.append)
    raw = (busybox_engine.runtime.store.dir(result.container_id) / LOG_FILE).read_bytes()
    busybox_engine.runtime.remove(result.container_id)
    assert result.exit_code == 0
    assert unstamped(stream_records(raw, "stdout")) == expected_stdout()
    assert "a" * MAX_LINE in seen and "c" * (3 * MAX_LINE + 7) in seen  # whole lines again


def test_rotation_matches_the_python_writer(busybox_engine: Engine, tmp_path: Path) -> None:
    # lines of many lengths, one of them above the cap: it gets a file of its own
    lines = [b"x" * (n * 37 % 300) for n in range(120)] + [b"y" * 2500] + [b"z" * 90] * 30
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "out").write_bytes(b"\n".join(lines) + b"\n")
    code, directory = run_detached(
        busybox_engine, "cat /data/out", log_max_bytes=2000, log_files=4,
        binds=(Bind(str(tmp_path / "data"), "/data", readonly=True),),
    )
    assert code == 0
    (tmp_path / "python").mkdir()
    dir_fd = os.open(tmp_path / "python", os.O_RDONLY | os.O_DIRECTORY)
    try:
        writer = LogWriter.open(dir_fd, 2000, 4)
        for line in lines:  # one line at a time: the cuts do not depend on the batching
            writer.write(reference("stdout", line + b"\n"))
        writer.close()
    finally:
        os.close(dir_fd)
    names = [f"{LOG_FILE}{suffix}" for suffix in ("", ".1", ".2", ".3")]
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(LOG_FILE)) == names
    for name in names:
        assert unstamped((directory / name).read_bytes()) == (tmp_path / "python" / name).read_bytes()


def test_a_log_above_the_cap_from_an_earlier_start_is_rotated_first(busybox_engine: Engine) -> None:
    container = busybox_engine.runtime.create(
        busybox_spec(busybox_engine, "echo new", log_max_bytes=2000, log_files=2))
    directory = busybox_engine.runtime.store.dir(container.id)
    old = reference("stdout", b"o" * 2900 + b"\n")  # as a bigger cap of an older engine left it
    (directory / LOG_FILE).write_bytes(old)
    busybox_engine.runtime.start(container.id)
    assert busybox_engine.runtime.wait(container.id, timeout=20).exit_code == 0
    assert (directory / f"{LOG_FILE}.1").read_bytes() == old
    assert [line.text for line in logs.read_logs(directory)] == ["o" * 2900, "new"]


def test_every_signal_is_forwarded(busybox_engine: Engine) -> None:
    realtime = signal.SIGRTMIN + 6
    sent = {"USR1": signal.SIGUSR1, "HUP": signal.SIGHUP, "WINCH": signal.SIGWINCH,
            "INT": signal.SIGINT, str(realtime): realtime}
    traps = "; ".join(f"trap 'echo got {name}' {name}" for name in sent)
    script = f"{traps}; trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.02; done"
    container_id = start(busybox_engine, script)
    directory = busybox_engine.runtime.store.dir(container_id)
    state = busybox_engine.runtime.get(container_id).state
    assert state.pid and state.starttime
    init = ProcessRef(state.pid, state.starttime)

    def said(text: str) -> bool:
        return text in [line.text for line in logs.read_logs(directory)]

    wait_until(lambda: said("ready"), 20, "the app to start")
    for name, signum in sent.items():
        assert send_signal(init, signum)
        wait_until(lambda name=name: said(f"got {name}"), 20, f"the app to get {name}")  # type: ignore[misc]
    assert send_signal(init, signal.SIGTERM)
    assert busybox_engine.runtime.wait(container_id, timeout=20).exit_code == 7
    assert [line.text for line in logs.read_logs(directory)][-1] == "got TERM"


@pytest.mark.parametrize(("script", "code"), [
    ("true", 0), ("exit 3", 3), ("kill -9 $$", 128 + 9), ("kill -USR2 $$", 128 + 12),
])
def test_exit_codes(busybox_engine: Engine, script: str, code: int) -> None:
    exit_code, directory = run_detached(busybox_engine, script)
    assert exit_code == code
    assert (directory / EXIT_CODE_FILE).read_text() == str(code)


def test_a_missing_program_fails_the_start_clearly(busybox_engine: Engine) -> None:
    spec = replace(busybox_spec(busybox_engine, ""), argv=("/no/such/program",))
    container = busybox_engine.runtime.create(spec)
    with pytest.raises(ContainerError, match="cannot run '/no/such/program': No such file"):
        busybox_engine.runtime.start(container.id)
    directory = busybox_engine.runtime.store.dir(container.id)
    assert (directory / EXIT_CODE_FILE).read_text() == "127"
    assert "No such file" in (directory / ERROR_FILE).read_text()
    assert busybox_engine.runtime.get(container.id).exit_code == 127
    records = logs.read_logs(directory)
    assert [(r.stream, r.text) for r in records] == [
        ("stderr", "paas: container failed to start: cannot run '/no/such/program': "
                   "No such file or directory")]


def test_the_app_gets_fds_0_to_2_and_default_signals(busybox_engine: Engine) -> None:
    def run(argv: tuple[str, ...]) -> list[str]:
        seen: list[str] = []
        spec = replace(busybox_spec(busybox_engine, ""), argv=argv)
        result = busybox_engine.runtime.run(spec, seen.append)
        busybox_engine.runtime.remove(result.container_id)
        assert result.exit_code == 0
        return seen

    assert run(("sh", "-c", "ls /proc/$$/fd; true")) == ["0", "1", "2"]  # the shell's own
    # the app itself, not a shell (ash ignores SIGQUIT for itself)
    status = ("grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status")
    assert run(status) == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]


def test_build_explains_a_missing_compiler(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="apt-get install gcc libc6-dev"):
        shim.build(tmp_path / "paas-shim", compiler="no-such-compiler")
    assert list(tmp_path.iterdir()) == []


def test_build_reports_compiler_errors_and_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return nope; }\n")
    with pytest.raises(ContainerError, match="nope"):
        shim.build(tmp_path / "out" / "paas-shim", broken)
    assert list((tmp_path / "out").iterdir()) == []


def test_shim_path_names_the_binary_after_its_source() -> None:
    path = shim.shim_path()
    assert path.is_file() and os.access(path, os.X_OK)
    assert path.name.startswith("paas-shim-") and shim.shim_path() is path



# The shim outside any container, started as init.py starts it: fork the app (it waits for
# the start byte), then exec the shim. argv: SHIM FD... -- APP ARGV...
HARNESS = """
import os, sys
shim, fds, app = sys.argv[1], [int(a) for a in sys.argv[2:12]], sys.argv[13:]
start_r, start_w, errors_r, errors_w, out_r, out_w, err_r, err_w, state, report = fds
pid = os.fork()
if pid == 0:
    os.dup2(out_w, 1); os.dup2(err_w, 2)
    os.read(start_r, 1)
    os.closerange(3, errors_w); os.closerange(errors_w + 1, 1024)
    os.set_inheritable(errors_w, False)
    os.execvp(app[0], app)
for fd in (start_r, errors_w, out_w, err_w):
    os.close(fd)
os.execv(shim, ["paas-shim", *map(str, (start_w, errors_r, out_r, err_r, state, report, pid)), "0", "3"])
"""
APP = """
import signal, sys, time
def note(text):
    with open(sys.argv[1], "a") as f:
        f.write(text + "\\n")
def usr1(*_):
    note("USR1")
    print("hello", flush=True)  # the shim's write of it fails: its stdout has no reader
    time.sleep(1)  # time for a SIGPIPE to arrive, were the shim to pass its own on
    sys.exit(4)
signal.signal(signal.SIGPIPE, lambda *_: note("PIPE"))
signal.signal(signal.SIGUSR1, usr1)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_the_shims_own_sigpipe_is_not_forwarded(tmp_path: Path) -> None:
    pipes = [os.pipe() for _ in range(6)]  # start, errors, stdout, stderr, report, shim's fd 1
    fds = [fd for pair in pipes[:5] for fd in pair]
    state_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    marker = tmp_path / "marker"
    log_r, log_w = pipes[5]
    report_r, report_w = pipes[4]
    argv = [sys.executable, "-c", HARNESS, str(shim.shim_path()),
            *map(str, [*fds[:8], state_fd, report_w]), "--", sys.executable, "-c", APP, str(marker)]
    try:
        proc = subprocess.Popen(argv, stdout=log_w, pass_fds=[*fds, state_fd])
    finally:
        for fd in (*fds, state_fd, log_w):
            if fd != report_r:
                os.close(fd)
    try:
        with os.fdopen(report_r, "rb") as report:
            assert report.readline() == b"ok\n"
        with os.fdopen(log_r, "rb") as log:
            assert log.readline().endswith(b" stdout F ready\n")
        # the app is up; with the reader gone, the shim's next write raises SIGPIPE on itself
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.wait(timeout=20) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert marker.read_text() == "USR1\n"
    assert (tmp_path / EXIT_CODE_FILE).read_text() == "4"
