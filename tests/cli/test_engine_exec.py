"""`paas engine exec [-it]` through the real entry point, a real container, and a real pty."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios

import pytest
from testkit import engine_cli as paas

from paas.engine.engine import Engine

SLEEPER = ("sh", "-c", "echo app > /tmp/app-file; exec sleep 1000")


def run_in_pty(
    argv: list[str], typed: bytes, size: tuple[int, int],
    then: tuple[bytes, tuple[int, int], bytes] | None = None,
) -> tuple[int, bytes]:
    """`paas ARGV` in a child whose terminal is a new pty of `size`; type `typed` into it.
    `then`: once the output shows its first item, resize the terminal and type the last."""
    pid, master = pty.fork()
    if pid == 0:  # the child: the real entry point on a real terminal
        from paas.cli.main import main

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        sys.stdin, sys.stdout, sys.stderr = (open(fd, mode, closefd=False)  # noqa: SIM115
                                             for fd, mode in ((0, "r"), (1, "w"), (2, "w")))
        os._exit(main(argv))
    os.write(master, typed)
    seen = b""
    while select.select([master], [], [], 20)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child and everything it started has closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if then is not None and then[0] in seen:  # the kernel sends the CLI a SIGWINCH
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *then[1], 0, 0))
            os.write(master, then[2])
            then = None
    os.close(master)
    exited = os.pidfd_open(pid)
    if not select.select([exited], [], [], 10)[0]:  # it hangs: end it, fail rather than wait
        os.kill(pid, signal.SIGKILL)
    os.close(exited)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen


@pytest.fixture
def web(engine: Engine, capfd: pytest.CaptureFixture[str]) -> str:
    code, out, err = paas(capfd, "run", "-d", "--network", "none", "--name", "web", "busybox",
                          *SLEEPER)
    assert code == 0, err
    return out.strip()


def test_exec_runs_in_the_container_and_passes_the_exit_code(
    web: str, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = paas(capfd, "exec", "-e", "GREETING=hi", "-w", "/tmp", "web",
                        "sh", "-c", "echo $GREETING; ls; hostname; exit 4")
    assert code == 4
    assert out.splitlines() == ["hi", "app-file", web[:12]]
    code, out, _ = paas(capfd, "exec", "-u", "nobody", web[:8], "id", "-u")
    assert (code, out) == (0, "65534\n")


def test_exec_into_a_stopped_container_fails_clearly(
    web: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert paas(capfd, "stop", "-t", "0", "web")[0] == 0
    code, _, err = paas(capfd, "exec", "web", "true")
    assert code != 0 and "not running" in err


def test_exec_it_gives_a_terminal_of_the_windows_size(web: str) -> None:
    code, seen = run_in_pty(["engine", "exec", "-it", "web", "sh"], b"tty; stty size\n",
                            (41, 123), then=(b"41 123", (50, 100), b"stty size; exit 6\n"))
    assert code == 6, seen
    assert b"/dev/pts/0" in seen and b"41 123" in seen and b"50 100" in seen


def test_exec_t_without_i_still_gets_a_terminal(web: str) -> None:
    code, seen = run_in_pty(["engine", "exec", "-t", "web", "sh", "-c", "tty; stty size"],
                            b"", (24, 80))
    assert code == 0, seen
    assert b"/dev/pts/0" in seen and b"24 80" in seen
