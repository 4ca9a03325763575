"""`paas engine stats` on real containers: CPU % from the cgroup over wall time, memory limits,
one table with --no-stream, and streams that end when their containers do or on ^C."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

import pytest
from testkit import REPO_ROOT, engine_cli, paas_argv, stop_process

from paas.cli.container_format import STATS_HEADERS, cpu_percent
from paas.cli.engine_stats import host_memory
from paas.core.units import binary_size
from paas.engine.engine import Engine

BUSY = ("sh", "-c", "while :; do :; done")
SLEEPER = ("sh", "-c", "while true; do sleep 0.1; done")
STREAM_TIMEOUT_S = 30.0
Capsys = pytest.CaptureFixture[str]


def run_detached(capsys: Capsys, name: str, *args: str) -> None:
    code, _, err = engine_cli(capsys, "run", "-d", "--network", "none", "--name", name, *args)
    assert code == 0, err


def rows_by_name(out: str) -> dict[str, list[str]]:
    """The last table's rows, split on the table's 3-space column gaps, by container name."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("CONTAINER ID"))
    assert re.split(r" {3,}", lines[start]) == list(STATS_HEADERS)
    return {cells[1]: cells for cells in (re.split(r" {3,}", line) for line in lines[start + 1:])}


def percent(cell: str) -> float:
    assert cell.endswith("%"), cell
    return float(cell[:-1])


def start_stream(*args: str) -> subprocess.Popen[bytes]:
    """`paas engine stats ARGS...` in a child process, its stdout a pipe (not a terminal)."""
    return subprocess.Popen(paas_argv("engine", "stats", *args), cwd=REPO_ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE)


def read_until(proc: subprocess.Popen[bytes], text: str, seen: bytearray, times: int = 1) -> None:
    """Read the child's stdout into `seen` until `text` shows `times` times (or fail after a while)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    while seen.count(text.encode()) < times:
        assert time.monotonic() < deadline, f"no {text!r} in {seen.decode()!r}"
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"stats ended before {text!r}: {seen.decode()!r}"
            seen += chunk


def test_cpu_percent_is_cpu_time_over_wall_time() -> None:
    second = 1_000_000_000
    assert cpu_percent(second // 2, second) == 50.0
    assert cpu_percent(2 * second, second) == 200.0  # two cores busy: Docker's scale, not capped
    assert cpu_percent(0, second) == 0.0
    assert cpu_percent(-5, second) == 0.0  # a counter that started over
    assert cpu_percent(second, 0) == 0.0


def test_a_busy_loop_under_half_a_cpu_and_memory_limits(engine: Engine, capsys: Capsys) -> None:
    run_detached(capsys, "busy", "--cpus", "0.5", "busybox", *BUSY)
    run_detached(capsys, "capped", "-m", "64m", "busybox", *SLEEPER)
    code, out, err = engine_cli(capsys, "stats", "--no-stream")
    assert code == 0, err
    rows = rows_by_name(out)
    assert set(rows) == {"busy", "capped"}
    busy, capped = rows["busy"], rows["capped"]
    assert 10 < percent(busy[2]) < 90, busy  # near 50: loose, the host is shared
    assert busy[3].endswith(f" / {binary_size(host_memory())}")  # no -m: the host's memory
    assert capped[3].endswith(" / 64MiB") and 0 < percent(capped[4]) < 100
    assert percent(capped[2]) < 10 and int(capped[5]) >= 2  # sh and sleep


def test_no_stream_of_named_and_of_all_containers(engine: Engine, capsys: Capsys) -> None:
    run_detached(capsys, "up", "busybox", *SLEEPER)
    assert engine_cli(capsys, "run", "--network", "none", "--name", "done", "busybox", "true")[0] == 0
    code, out, _ = engine_cli(capsys, "stats", "--no-stream", "up")
    assert code == 0 and set(rows_by_name(out)) == {"up"}
    code, out, _ = engine_cli(capsys, "stats", "--no-stream")
    assert code == 0 and set(rows_by_name(out)) == {"up"}
    code, out, _ = engine_cli(capsys, "stats", "--no-stream", "-a")
    rows = rows_by_name(out)
    assert code == 0 and set(rows) == {"up", "done"}
    assert rows["done"][2:] == ["0.00%", "0B / 0B", "0.00%", "0"]  # stopped: zeros, as Docker
    code, _, err = engine_cli(capsys, "stats", "--no-stream", "nosuch")
    assert code == 1 and "no such container: nosuch" in err


def test_a_stream_of_named_containers_ends_when_they_exit(engine: Engine, capsys: Capsys) -> None:
    run_detached(capsys, "brief", "busybox", "sh", "-c", "until [ -e /tmp/done ]; do sleep 0.1; done")
    proc = start_stream("brief")
    seen = bytearray()
    try:
        read_until(proc, "CONTAINER ID", seen, times=2)  # refreshed while it ran
        [brief] = engine.runtime.list()
        assert engine.runtime.exec(brief.id, ["touch", "/tmp/done"], stdout=2) == 0
        out, _ = proc.communicate(timeout=STREAM_TIMEOUT_S)
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    text = (seen + out).decode()
    assert "\x1b" not in text  # not a terminal: plain lines, no cursor codes
    assert rows_by_name(text)["brief"][2:] == ["0.00%", "0B / 0B", "0.00%", "0"]  # its end, last


def test_a_stream_of_all_picks_up_new_containers_until_interrupted(
    engine: Engine, capsys: Capsys
) -> None:
    proc = start_stream()
    seen = bytearray()
    try:
        read_until(proc, "CONTAINER ID", seen)
        run_detached(capsys, "latecomer", "busybox", *SLEEPER)
        read_until(proc, "latecomer", seen)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STREAM_TIMEOUT_S) == 0
    finally:
        stop_process(proc)
