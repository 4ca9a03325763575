"""`paas engine run -i/-t`: the real CLI under a real pty, with Docker's semantics."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import START_TIMEOUT_S, stop_process, wait_until

from paas.engine.containers import ContainerStatus
from paas.engine.engine import Engine

PAAS = str(Path(sys.executable).with_name("paas"))


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class Terminal:
    """The CLI with a pty of ours as its stdin, stdout and stderr; we play the user."""

    def __init__(self, *argv: str, rows: int = 24, columns: int = 80) -> None:
        self.master, slave = os.openpty()
        set_size(self.master, rows, columns)
        self.proc = subprocess.Popen([PAAS, "engine", *argv], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[bytes]:
        """Wait for `pattern` in what came out since the last match; consume up to it."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern.encode(), self.seen)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise TimeoutError(f"no {pattern!r} in {self.seen!r}")
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:  # EIO: the CLI is gone
                raise AssertionError(f"no {pattern!r} in {self.seen!r}") from None
        self.seen = self.seen[found.end():]
        return found

    def resize(self, rows: int, columns: int) -> None:
        """What a terminal emulator does: set the size, then the CLI gets SIGWINCH."""
        set_size(self.master, rows, columns)
        os.kill(self.proc.pid, signal.SIGWINCH)

    def wait(self) -> int:
        return self.proc.wait(START_TIMEOUT_S)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for term in started:
        stop_process(term.proc)
        os.close(term.master)


def names(engine: Engine) -> list[str]:
    return [c.name for c in engine.runtime.list()]


def test_it_gives_sh_a_terminal_that_follows_resizes_and_exits_with_its_code(
    engine: Engine, terminals: list[Terminal]
) -> None:
    term = Terminal("run", "-it", "--rm", "--network", "none", "--name", "shell", "busybox", "sh",
                    rows=33, columns=111)
    terminals.append(term)
    term.expect(r"# ")
    term.type("tty; echo TERM=$TERM\r")
    assert term.expect(r"/dev/pts/\d+")
    term.expect(r"TERM=xterm")
    term.type("stty size\r")
    term.expect(r"33 111")
    term.resize(40, 120)
    # the CLI passes the SIGWINCH on while we may be typing already: ask until it shows
    wait_until(lambda: _stty_size(term) == b"40 120", what="the new window size")
    term.type("exit 3\r")
    assert term.wait() == 3
    assert "shell" not in names(engine)  # --rm


def _stty_size(term: Terminal) -> bytes:
    term.type("stty size\r")
    return term.expect(r"\r\n(\d+ \d+)\r\n").group(1)


def test_i_without_t_pipes_stdin_and_keeps_stdout_and_stderr_apart(engine: Engine) -> None:
    result = subprocess.run(
        [PAAS, "engine", "run", "-i", "--rm", "--network", "none", "busybox",
         "sh", "-c", "cat; echo to-stderr >&2; exit 4"],
        input=b"data\nmore", capture_output=True, timeout=START_TIMEOUT_S, check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (4, b"data\nmore", b"to-stderr\n")
    assert names(engine) == []


def test_t_without_i_needs_no_terminal_and_passes_no_input(engine: Engine) -> None:
    result = subprocess.run(  # the pty would echo what it got
        [PAAS, "engine", "run", "-t", "--rm", "--network", "none", "busybox", "sh", "-c", "tty"],
        input=b"typed\n", capture_output=True, timeout=START_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", result.stdout), result.stdout
    assert names(engine) == []


def test_it_needs_a_terminal_on_stdin(engine: Engine) -> None:
    result = subprocess.run([PAAS, "engine", "run", "-it", "busybox", "true"], input=b"",
                            capture_output=True, timeout=START_TIMEOUT_S, check=False)
    assert (result.returncode, result.stderr) == (1, b"the input device is not a TTY\n")
    assert names(engine) == []


def _run_detached(*args: str) -> str:
    """`paas engine run ARGS` (-d among them) with /dev/null for stdin; the container's id."""
    result = subprocess.run([PAAS, "engine", "run", *args], capture_output=True,
                            timeout=START_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


def test_dit_runs_detached_on_a_terminal_that_the_log_keeps(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    container_id = _run_detached("-dit", "--network", "none", "--name", "bg", "busybox",
                                 "sh", "-c", "tty; echo from-the-tty")
    wait_until(lambda: engine.runtime.wait(container_id, 0).exit_code is not None,
               what="the container's exit")
    logs = subprocess.run([PAAS, "engine", "logs", "bg"], capture_output=True, check=True,
                          timeout=START_TIMEOUT_S)
    assert re.fullmatch(rb"/dev/pts/\d+\r?\nfrom-the-tty\r?\n", logs.stdout), logs.stdout


def test_a_failed_start_reports_the_containers_code(engine: Engine) -> None:
    result = subprocess.run(
        [PAAS, "engine", "run", "-i", "--rm", "--network", "none", "busybox", "no-such-command"],
        input=b"", capture_output=True, timeout=START_TIMEOUT_S, check=False,
    )
    assert result.returncode == 127 and b"no-such-command" in result.stderr, result.stderr
    assert names(engine) == []


def test_the_container_runs_on_when_the_client_goes(engine: Engine, terminals: list[Terminal]) -> None:
    term = Terminal("run", "-it", "--network", "none", "--name", "kept", "busybox", "sh")
    terminals.append(term)
    term.expect(r"# ")
    term.type("while true; do echo tick; sleep 0.1; done\r")
    term.expect(r"tick")
    term.proc.kill()
    term.proc.wait()
    [container] = engine.runtime.list()
    ticks = engine.runtime.logs_path(container.id).read_text().count("tick")
    wait_until(lambda: engine.runtime.logs_path(container.id).read_text().count("tick") > ticks + 2,
               what="more output in the log")
    assert engine.runtime.get(container.id).status is ContainerStatus.RUNNING
    engine.runtime.stop(container.id, timeout=0)
    engine.runtime.remove(container.id)


def test_i_without_t_passes_our_signals_on(engine: Engine) -> None:
    script = "trap 'echo got-int; exit 5' INT; echo ready; while true; do sleep 0.1; done"
    proc = subprocess.Popen(
        [PAAS, "engine", "run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(START_TIMEOUT_S) == 5
        assert proc.stdout.read() == b"got-int\n"
    finally:
        stop_process(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    assert names(engine) == []


def test_di_keeps_a_stdin_open_for_the_app(engine: Engine) -> None:
    container_id = _run_detached("-di", "--network", "none", "--name", "open", "busybox",
                                 "sh", "-c", "readlink /proc/self/fd/0; exec cat")
    path = engine.runtime.logs_path(container_id)
    wait_until(lambda: "pipe:" in path.read_text(), what="the app's stdin in the log")
    assert engine.runtime.get(container_id).status is ContainerStatus.RUNNING  # cat reads on
    engine.runtime.remove(container_id, timeout=0)


def test_i_ends_with_the_app_even_while_input_keeps_coming(engine: Engine) -> None:
    endless = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(
            [PAAS, "engine", "run", "-i", "--rm", "--network", "none", "busybox",
             "sh", "-c", "head -n 2; exit 6"],
            stdin=endless.stdout, capture_output=True, timeout=START_TIMEOUT_S, check=False,
        )
    finally:
        stop_process(endless)
        assert endless.stdout is not None
        endless.stdout.close()
    assert (result.returncode, result.stdout, result.stderr) == (6, b"y\ny\n", b"")
    assert names(engine) == []


def test_i_copies_much_both_ways_at_once(engine: Engine) -> None:
    data = b"0123456789abcdef" * (1 << 18)  # 4 MiB: far more than the socket buffers
    result = subprocess.run(
        [PAAS, "engine", "run", "-i", "--rm", "--network", "none", "busybox", "cat"],
        input=data, capture_output=True, timeout=START_TIMEOUT_S * 3, check=False,
    )
    assert (result.returncode, len(result.stdout), result.stderr) == (0, len(data), b"")
    assert result.stdout == data
