"""Container logs on real containers: the line format, rotation, restarts, tail/since/follow, CLI."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from testkit import busybox_spec, engine_cli

from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.runtime import logs
from paas.engine.runtime.launchspec import LOG_FILE
from paas.engine.runtime.logwriter import LineSplitter, LogWriter
from paas.engine.runtime.process import ProcessRef, send_signal

RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*")


def spec(engine: Engine, script: str, **extra: Any) -> ContainerSpec:
    return busybox_spec(engine, "sh", "-c", script, name="logger", **extra)


def run_to_exit(engine: Engine, script: str, **extra: Any) -> Path:
    """Start a container (detached, as the deploy pipeline does), wait; return its dir."""
    container = engine.runtime.create(spec(engine, script, **extra))
    engine.runtime.start(container.id)
    assert engine.runtime.wait(container.id, timeout=10).exit_code == 0
    return engine.runtime.store.dir(container.id)


def texts(lines: list[logs.LogLine]) -> list[str]:
    return [line.text for line in lines]


def test_lines_come_with_their_stream_and_increasing_times(busybox_engine: Engine) -> None:
    directory = run_to_exit(busybox_engine, "echo out1; echo err1 >&2; sleep 0.01; echo out2")
    lines = logs.read_logs(directory)
    assert {(ln.stream, ln.text) for ln in lines} == {
        ("stdout", "out1"), ("stderr", "err1"), ("stdout", "out2")}
    assert [ln.time for ln in lines] == sorted(ln.time for ln in lines)
    raw = (directory / LOG_FILE).read_text().splitlines()
    assert len(raw) == 3 and all(RECORD.fullmatch(line) for line in raw)
    assert texts(logs.read_logs(directory, streams=frozenset({"stderr"}))) == ["err1"]


def test_a_last_line_without_newline_is_kept(busybox_engine: Engine) -> None:
    directory = run_to_exit(busybox_engine, "echo first; printf 'no newline'")
    assert texts(logs.read_logs(directory)) == ["first", "no newline"]


def test_a_long_line_is_split_into_parts_and_read_back_whole(busybox_engine: Engine) -> None:
    size = 2 * logs.MAX_LINE + 100
    script = f"head -c {size} /dev/zero | tr '\\0' a; echo; echo short"
    directory = run_to_exit(busybox_engine, script)
    tags = [line.split(" ")[2] for line in (directory / LOG_FILE).read_text().splitlines()]
    assert tags == ["P", "P", "F", "F"]
    assert texts(logs.read_logs(directory)) == ["a" * size, "short"]
    seen: list[str] = []
    result = busybox_engine.runtime.run(spec(busybox_engine, script), seen.append)
    assert result.exit_code == 0 and seen == ["a" * size, "short"]  # build steps see whole lines


def test_rotation_keeps_at_most_n_files_and_reads_across_them(busybox_engine: Engine) -> None:
    directory = run_to_exit(busybox_engine, "seq 1 400", log_max_bytes=2000, log_files=3)
    names = sorted(p.name for p in directory.iterdir() if p.name.startswith(LOG_FILE))
    assert names == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert all(os.path.getsize(directory / name) <= 2000 for name in names)
    kept = [int(text) for text in texts(logs.read_logs(directory))]
    assert kept == list(range(kept[0], 401)) and kept[0] > 1  # the newest, in order
    assert texts(logs.read_logs(directory, tail=3)) == ["398", "399", "400"]
    assert texts(logs.read_logs(directory, tail=len(kept) - 1)) == [str(n) for n in kept[1:]]


def test_logs_are_kept_across_restarts(busybox_engine: Engine) -> None:
    container = busybox_engine.runtime.create(spec(busybox_engine, "echo run"))
    for _ in range(2):
        busybox_engine.runtime.start(container.id)
        busybox_engine.runtime.wait(container.id, timeout=10)
    assert texts(logs.read_logs(busybox_engine.runtime.store.dir(container.id))) == ["run", "run"]


def test_tail_and_since(busybox_engine: Engine) -> None:
    directory = run_to_exit(busybox_engine, "for i in 1 2 3 4; do echo $i; sleep 0.01; done")
    lines = logs.read_logs(directory)
    assert texts(logs.read_logs(directory, tail=2)) == ["3", "4"]
    assert logs.read_logs(directory, tail=0) == []
    assert texts(logs.read_logs(directory, since=lines[2].time)) == ["3", "4"]
    assert logs.read_logs(directory, since=logs.parse_since("0s")) == []
    assert texts(logs.read_logs(directory, since=logs.parse_since("10m"))) == ["1", "2", "3", "4"]


def test_parse_since() -> None:
    now = 1_700_000_000 * 10**9
    assert logs.parse_since("1h30m", now) == logs.format_time(now - 5400 * 10**9)
    assert logs.parse_since("2024-01-31T12:00:00.5Z") == "2024-01-31T12:00:00.500000000Z"
    assert logs.parse_since("2024-01-31T13:00:00+01:00") == "2024-01-31T12:00:00.000000000Z"
    assert logs.parse_since("1700000000") == "2023-11-14T22:13:20.000000000Z"
    with pytest.raises(Exception, match="invalid time"):
        logs.parse_since("yesterday")


def test_follow_sees_new_lines_and_returns_when_the_container_exits(busybox_engine: Engine) -> None:
    script = "trap 'echo second >&2; exit 0' USR1; echo first; while :; do sleep 0.05; done"
    runtime = busybox_engine.runtime
    container = runtime.create(spec(busybox_engine, script))
    runtime.start(container.id)
    directory = runtime.store.dir(container.id)

    def exited(timeout: float) -> bool:
        return runtime.wait(container.id, timeout).status.value != "running"

    lines = logs.follow(directory, exited, poll=0.05)
    assert next(lines).text == "first"
    state = runtime.get(container.id).state
    assert state.pid and state.starttime
    # the init forwards it; the trap writes after following began
    assert send_signal(ProcessRef(state.pid, state.starttime), signal.SIGUSR1)
    assert [(ln.stream, ln.text) for ln in lines] == [("stderr", "second")]
    assert runtime.get(container.id).status.value == "exited"


def test_cli_prints_each_stream_to_its_own(
    cli_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    script = "echo out1; echo err1 >&2; sleep 0.2; echo out2"
    code, _, _ = engine_cli(capsys, "run", "-d", "--network", "none", "--name", "two",
                            "busybox", "sh", "-c", script)
    assert code == 0
    assert engine_cli(capsys, "logs", "-f", "two") == (0, "out1\nout2\n", "err1\n")
    assert engine_cli(capsys, "logs", "-n", "1", "two") == (0, "out2\n", "")
    code, out, _ = engine_cli(capsys, "logs", "-t", "--since", "1h", "two")
    assert code == 0 and re.fullmatch(r"\S+Z out1\n\S+Z out2\n", out)
    code, _, err = engine_cli(capsys, "logs", "--since", "someday", "two")
    assert code != 0 and "invalid time" in err


def test_follow_keeps_up_across_rotations(busybox_engine: Engine) -> None:
    script = "trap 'seq 1 300; exit 0' USR1; echo first; while :; do sleep 0.05; done"
    runtime = busybox_engine.runtime
    container = runtime.create(spec(busybox_engine, script, log_max_bytes=2000))
    state = runtime.start(container.id).state
    lines = logs.follow(runtime.store.dir(container.id),
                        lambda timeout: runtime.wait(container.id, timeout).status.value != "running")
    assert next(lines).text == "first"
    assert state.pid and state.starttime
    assert send_signal(ProcessRef(state.pid, state.starttime), signal.SIGUSR1)
    numbers = [int(line.text) for line in lines]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 300  # in order, none twice


def test_a_process_left_behind_does_not_keep_the_container_alive(busybox_engine: Engine) -> None:
    directory = run_to_exit(busybox_engine, "sleep 100 & echo bye")
    assert texts(logs.read_logs(directory)) == ["bye"]


def test_writer_rotates_between_records(tmp_path: Path) -> None:
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writer = LogWriter.open(dir_fd, max_bytes=100, files=2)
        splitter = LineSplitter(logs.STDOUT)
        stamp = logs.format_time(0).encode()
        for text in (b"a" * 20, b"b" * 20, b"c" * 200, b"d"):
            writer.write(splitter.feed(text + b"\n", stamp))
        writer.close()
    finally:
        os.close(dir_fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_FILE, f"{LOG_FILE}.1"]
    assert texts(logs.read_logs(tmp_path)) == ["c" * 200, "d"]  # a record above the cap: alone
    assert (tmp_path / f"{LOG_FILE}.1").stat().st_size > 100
