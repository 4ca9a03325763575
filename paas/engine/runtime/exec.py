"""Exec: run one more process inside a running container (the engine's side).

A fresh helper process (runtime.nsexec) does the joining, so the threads and fds of the
calling process never matter. The helper and the engine talk over one unix socket: the
engine sends an ExecSpec as JSON and shuts its side down; the helper answers `ok` (with the
pty master attached as SCM_RIGHTS when a tty was asked for) or `error MESSAGE`. The exec'd
process's exit code is the helper's. Without a tty the process gets pipes, and we copy to and
from the caller's stdio (runtime.stdio), so it never holds one of the caller's files. The
helper waits inside the container's cgroup: it counts as one of the container's pids.
"""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import paas
from paas.engine.containers import Container
from paas.engine.runtime.execspec import ExecSpec
from paas.engine.runtime.stdio import Relay
from paas.errors import ContainerError

HELPER = "from paas.engine.runtime.nsexec import main; main()"
REPLY_LIMIT = 4096
# Called with the pty master and a pidfd that turns readable when the exec'd process ends.
Attach = Callable[[int, int], None]


def exec_spec(
    container: Container, cgroups: Sequence[Path], argv: Sequence[str], *, env: Sequence[str],
    user: str | None, workdir: str | None, tty: bool, winsize: tuple[int, int] | None,
) -> ExecSpec:
    """The spec of an exec into `container`, which must be running: image and container env
    first, then `env`; the container's user and workdir unless given."""
    state = container.state
    if container.pid is None or state.starttime is None:
        raise ContainerError(f"container {container.name} is not running")
    if not argv:
        raise ContainerError("exec needs a command")
    spec = container.spec
    return ExecSpec(
        pid=container.pid, starttime=state.starttime, cgroups=tuple(str(p) for p in cgroups),
        argv=tuple(argv), env=(*spec.env, *env), user=user or spec.user,
        workdir=workdir or spec.workdir, hostname=spec.hostname or container.id[:12],
        tty=tty, winsize=winsize,
    )


def run_exec(spec: ExecSpec, stdio: tuple[int, int, int], attach: Attach | None = None) -> int:
    """Run the process to its end; return its exit code. With spec.tty, `attach` copies."""
    relay = None if spec.tty else Relay(stdio)
    try:
        proc, master = _start(spec, stdio if relay is None else relay.child, relay)
        try:
            pidfd = os.pidfd_open(proc.pid)
            try:
                if relay is not None:
                    relay.run(pidfd)
                elif master is not None and attach is not None:
                    attach(master, pidfd)
            finally:
                os.close(pidfd)
            return proc.wait()
        finally:
            if master is not None:
                os.close(master)
    finally:
        if relay is not None:
            relay.close()


def _start(
    spec: ExecSpec, stdio: tuple[int, int, int], relay: Relay | None
) -> tuple[subprocess.Popen[bytes], int | None]:
    """The helper, joined and started; its pty master when spec.tty."""
    ours, theirs = socket.socketpair()
    with ours:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", HELPER, str(theirs.fileno())],
                env=_helper_env(), stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # the terminal's ^C is for the CLI, not the helper
            )
        except OSError as exc:
            raise ContainerError(f"cannot start the exec helper: {exc}") from None
        finally:
            theirs.close()
            if relay is not None:
                relay.close_child_ends()
        try:
            return proc, _handshake(ours, spec)
        except BaseException:
            proc.kill()
            proc.wait()
            raise


def _helper_env() -> dict[str, str]:
    """The helper interpreter's environment: just enough to import paas, no site, and none
    of our secrets, which the container could otherwise read."""
    return {"PYTHONPATH": str(Path(paas.__file__).resolve().parent.parent)}


def _handshake(sock: socket.socket, spec: ExecSpec) -> int | None:
    sock.sendall(spec.to_json().encode())
    sock.shutdown(socket.SHUT_WR)
    fds = array.array("i")
    message, ancillary, _, _ = sock.recvmsg(REPLY_LIMIT, socket.CMSG_SPACE(fds.itemsize))
    for level, what, data in ancillary:
        if level == socket.SOL_SOCKET and what == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    kind, _, text = message.decode(errors="replace").partition(" ")
    if kind != "ok":
        for fd in fds:
            os.close(fd)
        raise ContainerError(text or "the exec helper died before it joined the container")
    return fds[0] if fds else None
