"""The exec helper process: join a running container and run one process in it.

Started by runtime.exec with the container's stdio (or none, for a tty) and a unix socket
as argv[1]. It becomes non-dumpable at once, so nothing in the container can reach the host
python through /proc/PID/exe, root, cwd or fd while it is ours; joins the init's cgroup and
namespaces (mount last: after it the host's files are gone, so every import is done first);
forks, since only children enter a pid namespace; and waits for that child, whose exit code
becomes its own. The child gets the app's confinement and none of our fds before exec.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
import termios
import warnings  # noqa: F401  os.execvpe imports it lazily; it must be loaded before setns
from dataclasses import dataclass

from paas.engine.runtime import _libc, caps, process, safepath, seccomp, security, users
from paas.engine.runtime.execspec import ExecSpec
from paas.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# Mount last: joining it swaps our root for the container's, and /proc/PID/ns with it.
NAMESPACES = ("ipc", "uts", "net", "pid", "cgroup", "mnt")
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431  # termios lacks both
_SPEC_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class _Exec:
    who: users.Identity
    env: dict[str, str]
    workdir_fd: int
    seccomp_program: bytes
    tty_fd: int  # the pty slave, or -1


def main() -> NoReturn:
    security.hide_from_ptrace()
    sock = socket.socket(fileno=int(sys.argv[1]))
    spec = ExecSpec.from_json(_read_spec(sock))
    try:
        child = _join_and_fork(spec, sock)
    except (OSError, ContainerError) as exc:
        _reply(sock, f"error {exc}")
        os._exit(process.EXIT_SETUP_FAILED)
    code = _wait(child)
    os._exit(code)


def _read_spec(sock: socket.socket) -> str:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        if sum(map(len, chunks)) > _SPEC_LIMIT:
            break
    return b"".join(chunks).decode()


def _join_and_fork(spec: ExecSpec, sock: socket.socket) -> int:
    """Everything up to the fork; the reply goes out once the child is on its way."""
    program = seccomp.build(os.uname().machine)
    ns_fds = _open_namespaces(spec)
    for path in spec.cgroups:  # before the cgroup namespace: these are host paths
        with open(os.path.join(path, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    for fd in ns_fds:
        _libc.setns(fd)
        os.close(fd)
    os.chdir("/")
    # Before reading anything of the container's: without CAP_SYS_PTRACE, a link such as
    # /etc/passwd -> /proc/1/fd/N cannot lead us into the init's host fds.
    caps.limit_sets(0)
    who = users.resolve(spec.user)
    env = process.environ(spec.env, spec.hostname, who.home, spec.tty)
    master, slave = _open_pty(spec.winsize) if spec.tty else (-1, -1)
    app = _Exec(who, env, safepath.open_workdir(spec.workdir), program, slave)
    errors_r, errors_w = os.pipe()
    child = os.fork()
    if child == 0:
        _exec(spec, app, errors_w)
    os.close(errors_w)
    for fd in (slave, app.workdir_fd):
        if fd >= 0:
            os.close(fd)
    message = process.read_all(errors_r)
    _reply(sock, "ok", master)
    if master >= 0:
        os.close(master)
    if message:  # like Docker: the code says why (126, 127), stderr says what
        code, _, text = message.partition(" ")
        _wait(child)
        print(f"paas: exec failed: {text}", file=sys.stderr, flush=True)
        os._exit(int(code))
    return child


def _open_namespaces(spec: ExecSpec) -> list[int]:
    """Fds of the init's namespaces that differ from ours, checked to be the init's."""
    fds = []
    for name in NAMESPACES:
        try:
            fd = os.open(f"/proc/{spec.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # a kernel without this namespace type (or the init is gone: see below)
        if os.fstat(fd).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
            os.close(fd)  # not unshared (cgroup on v1, net with the host's network)
            continue
        fds.append(fd)
    # Opened first, checked second: a matching starttime now means the fds are the init's.
    if not process.is_alive(process.ProcessRef(spec.pid, spec.starttime)):
        for fd in fds:
            os.close(fd)
        raise ContainerError("the container is not running")
    return fds


def _open_pty(winsize: tuple[int, int] | None) -> tuple[int, int]:
    """A pty of the container's own devpts (we are in its mount namespace now)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    # TIOCGPTPEER opens the slave of this very master, no path lookup to race with.
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if winsize is not None:
        rows, columns = winsize
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def _exec(spec: ExecSpec, app: _Exec, errors: int) -> NoReturn:
    try:
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        if app.tty_fd >= 0:
            fcntl.ioctl(app.tty_fd, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):
                os.dup2(app.tty_fd, target)
        security.confine(app.who, app.seccomp_program)
        os.fchdir(app.workdir_fd)
        # None of our host fds survive into the process.
        process.exec_or_report(spec.argv, app.env, errors)
    except (OSError, ContainerError) as exc:  # the setup before exec failed
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        os.write(errors, f"{process.EXIT_SETUP_FAILED} {why}".encode())
    os._exit(process.EXIT_NOT_FOUND)


def _wait(child: int) -> int:
    while True:
        with contextlib.suppress(InterruptedError):
            return process.exit_code(os.waitpid(child, 0)[1])


def _reply(sock: socket.socket, line: str, fd: int = -1) -> None:
    ancillary = []
    if fd >= 0:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd])))
    with contextlib.suppress(OSError):  # the engine gave up; our exit code still tells
        sock.sendmsg([line.encode()], ancillary)
    sock.close()
