"""Helpers of the tests that use the real things: processes, ports, keys, the SSH client side."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paas.config import Settings
from paas.engine.baseimages import build_busybox
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 20.0
SSH_OPTIONS = (
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float = START_TIMEOUT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process this test session started: SIGTERM, then SIGKILL, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), **extra}


def paas_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "paas.cli.main", *args]


@dataclass(frozen=True)
class KeyPair:
    name: str
    private: Path
    public: Path


def make_keypair(directory: Path, name: str) -> KeyPair:
    private = directory / f"id_{name}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)],
        check=True,
    )
    return KeyPair(name, private, private.with_suffix(".pub"))


@dataclass(frozen=True)
class SSHTarget:
    """How a client reaches the test SSH server: ssh argv, git push URLs and env."""

    port: int
    key: KeyPair
    pid: int

    def ssh_argv(self, *command: str, user: str = "git", key: Path | None = None) -> list[str]:
        identity = str(key or self.key.private)
        return ["ssh", *SSH_OPTIONS, "-i", identity, "-p", str(self.port), f"{user}@127.0.0.1",
                *command]

    def ssh(self, *command: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.ssh_argv(*command, **kw), capture_output=True, text=True, timeout=timeout,  # type: ignore[arg-type]
            stdin=subprocess.DEVNULL,
        )

    def url(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.port}/{app}"

    @property
    def git_env(self) -> dict[str, str]:
        options = " ".join(SSH_OPTIONS)
        command = f"ssh {options} -i {self.key.private} -p {self.port}"
        return {**os.environ, "GIT_SSH_COMMAND": command, "GIT_TERMINAL_PROMPT": "0"}


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(host: str, port: int, timeout: float = 5.0, path: str = "/index.html") -> str:
    """The body of GET `path`, retrying until something answers or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            try:
                conn.request("GET", path)
                return conn.getresponse().read().decode()
            finally:
                conn.close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def git(cwd: Path, *args: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=check)


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A work tree with one commit on main holding `files` (none: an empty commit)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", "initial")
    return path


def random_subnet() -> str:
    """A /24 that no other test run on this host is likely to hold at the same time."""
    return f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"


@contextlib.contextmanager
def scratch_engine(root: Path, *, with_busybox: bool = True) -> Iterator[Engine]:
    """An engine on a private root with its own bridge and subnet; every container it made
    is removed after, and with them its cgroups, veths and bridge."""
    engine = Engine.open(root, f"pte{random.randint(0, 10**8):08d}", random_subnet())
    try:
        if with_busybox and not engine.images.has("busybox"):
            build_busybox(engine.images, lambda line: None)
        yield engine
    finally:
        engine.runtime.cleanup_all(timeout=1)


def busybox_spec(engine: Engine, *argv: str, name: str = "test", network: str = "none",
                 **extra: Any) -> ContainerSpec:
    """A container of the engine's busybox image running `argv`."""
    lowerdirs = tuple(str(d) for d in engine.images.lowerdirs(engine.images.get("busybox")))
    return ContainerSpec(name=name, lowerdirs=lowerdirs, argv=argv, network=network, **extra)  # type: ignore[arg-type]


def engine_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """`paas engine ARGV...` in this process: (exit code, stdout, stderr)."""
    from paas.cli.main import main

    code = main(["engine", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def iptables_rules(tag: str) -> list[str]:
    """The iptables rules tagged ``tag`` or ``tag:<more>`` (paas:<bridge>[:<container>]), so a
    bridge named pt1 does not count the rules of pt12."""
    dump = subprocess.run(["iptables-save"], check=True, capture_output=True, text=True).stdout
    return [line for line in dump.splitlines() if f'"{tag}"' in line or f'"{tag}:' in line]


# -- the SSH client on a terminal (`ssh -t` as a user types it) ---------------------------

class ClientTerminal:
    """The OpenSSH client on a terminal of ours (a pty we hold the master of), like a user's."""

    def __init__(self, argv: list[str], rows: int, columns: int,
                 erase: bytes | None = None) -> None:
        self.master, slave = os.openpty()
        resize_terminal(self.master, rows, columns)
        if erase is not None:  # the user's erase character (stty erase), a mode ssh passes on
            attrs = termios.tcgetattr(slave)
            attrs[6][termios.VERASE] = erase
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 20) -> bytes:
        """What the terminal showed, once it showed the whole line holding `marker`."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen or b"\n" not in self.seen.split(marker, 1)[1]:
            assert time.monotonic() < deadline, f"no {marker!r} in {self.seen!r}"
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # EIO: the client exited
                    raise AssertionError(f"no {marker!r} in {self.seen!r}") from None
        return self.seen

    def close(self) -> None:
        stop_process(self.proc)
        os.close(self.master)


def resize_terminal(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
