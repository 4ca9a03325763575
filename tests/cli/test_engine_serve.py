"""`paas engine serve` and the thin `paas` client: the real commands, through a real server."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import START_TIMEOUT_S, stop_process, wait_until

from paas.cli import client
from paas.config import Settings
from paas.engine.engine import Engine
from paas.engine.runtime import monitorlock

PAAS = str(Path(sys.executable).with_name("paas"))
NOBODY = 65534


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], socket_path: Path) -> None:
        self.proc = proc
        self.socket_path = socket_path

    def children(self) -> list[int]:
        """The commands it runs now (its forked children)."""
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in text.split()]


@pytest.fixture
def server(cli_engine: Engine) -> Iterator[Server]:
    """`paas engine serve` for the root the CLI opens (PAAS_HOME is in our environment)."""
    socket_path = Path(client.socket_path(os.environ))
    proc = subprocess.Popen([PAAS, "engine", "serve"], stdin=subprocess.DEVNULL)
    try:
        wait_until(socket_path.exists, what="the server's socket")
        yield Server(proc, socket_path)
    finally:
        stop_process(proc)


def paas(*argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PAAS, "engine", *argv], capture_output=True, cwd=cwd, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, timeout=START_TIMEOUT_S, check=False)


def test_the_socket_is_the_settings_root_and_only_ours(server: Server) -> None:
    assert server.socket_path.parent == Settings.from_env().engine_root
    assert server.socket_path.stat().st_mode & 0o777 == 0o600


def test_run_through_the_server_gives_the_output_and_the_exit_code(server: Server) -> None:
    echo = paas("run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert (echo.returncode, echo.stdout, echo.stderr) == (0, b"hi\n", b"")
    assert paas("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 7").returncode == 7


def test_stdout_and_stderr_stay_apart(server: Server) -> None:
    result = paas("run", "-i", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"out\n", b"err\n")
    missing = paas("rmi", "no-such-image")
    assert (missing.returncode, missing.stdout) == (1, b"")
    assert missing.stderr.startswith(b"error: "), missing.stderr


def test_e_key_takes_the_value_from_the_clients_environment(server: Server) -> None:
    result = paas("run", "--rm", "--network", "none", "-e", "GREETING", "busybox",
                  "sh", "-c", "echo $GREETING", GREETING="from-the-client")
    assert result.stdout == b"from-the-client\n", result.stderr


def test_relative_paths_are_the_clients(server: Server, tmp_path: Path) -> None:
    result = paas("save", "-o", "busybox.tar", "busybox", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "busybox.tar").stat().st_size > 0


def test_the_server_refuses_another_uid(server: Server) -> None:
    os.chmod(server.socket_path, 0o666)  # past the first lock, the mode; the second must hold
    # The root's parents (a private temp dir) are not for nobody: go in through an fd of it.
    engine_dir = os.open(server.socket_path.parent, os.O_PATH)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.connect(f"/proc/self/fd/{engine_dir}/{client.SOCKET_NAME}")
                sock.settimeout(START_TIMEOUT_S)
                os.write(write_end, sock.recv(256)[:1] or b"-")
        except OSError as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(engine_dir)
    os.close(write_end)
    try:
        assert os.read(read_end, 16) == client.REFUSED
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert server.children() == []


def _follow(argv: list[str]) -> subprocess.Popen[bytes]:
    """`paas engine logs -f` of a container that ticks, once it has shown a tick."""
    engine_run = paas("run", "-d", "--network", "none", "--name", "ticker", "busybox",
                      "sh", "-c", "while true; do echo tick; sleep 0.1; done")
    assert engine_run.returncode == 0, engine_run.stderr
    proc = subprocess.Popen([*argv, "engine", "logs", "-f", "ticker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"tick\n"
    return proc


def _interrupted(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=START_TIMEOUT_S)
    return proc.returncode, err


def test_a_sigint_to_the_client_ends_logs_f_as_it_does_in_process(server: Server) -> None:
    in_process = _follow([sys.executable, "-m", "paas.cli.main"])
    try:
        assert server.children() == []
        expected = _interrupted(in_process)
    finally:
        stop_process(in_process)
    served = subprocess.Popen([PAAS, "engine", "logs", "-f", "ticker"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert served.stdout is not None
        assert served.stdout.readline() == b"tick\n"
        assert len(server.children()) == 1
        assert _interrupted(served) == expected
    finally:
        stop_process(served)
    wait_until(lambda: server.children() == [], what="the command's end")


def test_a_killed_client_takes_its_command_along(server: Server) -> None:
    proc = _follow([PAAS])
    try:
        [child] = server.children()
        proc.kill()
        proc.wait(START_TIMEOUT_S)
        wait_until(lambda: child not in server.children(), what="the command to get SIGHUP and end")
    finally:
        stop_process(proc)


def test_without_a_server_the_client_runs_the_command_itself(server: Server) -> None:
    served = paas("run", "--rm", "--network", "none", "busybox", "echo", "hi")
    detached = paas("run", "-d", "--network", "none", "busybox", "sleep", "1000")
    assert detached.returncode == 0, detached.stderr
    stop_process(server.proc)
    assert not server.socket_path.exists()
    # what the server started holds none of its fds: the lock is free for the next one
    assert not monitorlock.is_held(server.socket_path.parent, monitorlock.SERVER_LOCK_FILE)
    in_process = paas("run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert (in_process.returncode, in_process.stdout, in_process.stderr) == \
        (served.returncode, served.stdout, served.stderr) == (0, b"hi\n", b"")


def test_a_second_server_on_the_root_declines(server: Server) -> None:
    second = subprocess.run([PAAS, "engine", "serve"], capture_output=True, timeout=START_TIMEOUT_S,
                            stdin=subprocess.DEVNULL, check=False)
    assert second.returncode == 1 and b"already serves" in second.stderr
    assert paas("run", "--rm", "--network", "none", "busybox", "true").returncode == 0


def test_cleanup_all_stops_the_server(server: Server, cli_engine: Engine) -> None:
    cli_engine.runtime.cleanup_all(timeout=1)
    assert server.proc.wait(START_TIMEOUT_S) == 0
    assert not server.socket_path.exists()


def test_it_runs_on_the_clients_terminal_and_follows_its_size(server: Server) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen([PAAS, "engine", "run", "-it", "--rm", "--network", "none", "busybox", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""
    last: list[bytes] = [b""]

    def expect(pattern: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := re.search(pattern, seen)):
            assert select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0], seen
            seen += os.read(master, 4096)
        last[0] = found.group(found.lastindex or 0)
        seen = seen[found.end():]

    try:
        expect(rb"# ")
        assert len(server.children()) == 1
        os.write(master, b"tty; echo $((6 * 7)); stty size\r")
        expect(rb"/dev/pts/\d+\r\n42\r\n33 111\r\n")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc.send_signal(signal.SIGWINCH)  # what a terminal emulator does after a resize

        def size() -> bytes:
            os.write(master, b"stty size\r")
            expect(rb"\r\n(\d+ \d+)\r\n")
            return last[0]

        wait_until(lambda: size() == b"40 120", what="the new window size")
        os.write(master, b"exit 5\r")
        assert proc.wait(START_TIMEOUT_S) == 5
    finally:
        stop_process(proc)
        os.close(master)
