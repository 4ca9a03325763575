"""The container's PID 1: finish setup, start the app, forward signals, reap, record the exit.

After pivot_root the host's files are gone, so everything used here is imported up front,
and the exit code is written through a directory fd opened before the pivot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings  # noqa: F401  os.execvpe imports it lazily; it must be loaded before pivot_root
from dataclasses import dataclass  # launchspec loads it anyway

from paas.engine.runtime import _libc, netconf, rootfs, safepath, seccomp, security, users
from paas.engine.runtime.launchspec import ERROR_FILE, EXIT_CODE_FILE, LaunchSpec
from paas.errors import ContainerError

TYPE_CHECKING = False  # the launcher starts with every container: keep its imports few
if TYPE_CHECKING:
    from typing import NoReturn

FORWARDED_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
)
# Python ignores these at startup; an ignored disposition would survive exec into the app.
RESET_SIGNALS = (*FORWARDED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class _SetupFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main(spec: LaunchSpec) -> NoReturn:
    os.set_inheritable(spec.report_fd, False)
    state_fd = os.open(spec.state_dir, os.O_RDONLY | os.O_DIRECTORY)
    go = os.read(spec.go_fd, 2)
    os.close(spec.go_fd)
    if go != b"go":  # the engine gave up on this start
        os._exit(EXIT_SETUP_FAILED)
    try:
        app = _setup_and_spawn(spec)
    except _SetupFailed as exc:
        _fail(spec, state_fd, str(exc), exc.code)
    except Exception as exc:  # an entry point: every failure must reach the log and the state
        message = str(exc) if isinstance(exc, OSError | ContainerError) else repr(exc)
        _fail(spec, state_fd, message, EXIT_SETUP_FAILED)
    _report(spec.report_fd, "ok")
    os.close(spec.report_fd)
    code = _supervise(app)
    _write_state(state_fd, EXIT_CODE_FILE, str(code))
    os._exit(code)


def _setup_and_spawn(spec: LaunchSpec) -> int:
    program = seccomp.build(os.uname().machine)  # an unknown architecture never runs unfiltered
    security.own_cgroup_namespace()  # after "go": the engine has put us in our cgroup
    _libc.sethostname(spec.hostname)
    if spec.net is not None:
        net = spec.net
        netconf.configure_eth0(net.peer, net.ip, net.netmask, net.gateway)
    elif spec.network == "none":
        netconf.loopback_up()
    rootfs.setup_rootfs(spec)
    rootfs.pivot(spec.rootfs)
    identity = users.resolve(spec.user)
    env = _environ(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", spec.hostname)
    env.setdefault("HOME", identity.home)
    workdir = safepath.open_workdir(spec.workdir)
    return _spawn(spec, _Exec(identity, env, workdir, program))


def _environ(entries: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


@dataclass(frozen=True, slots=True)
class _Exec:
    """What the app's process needs between fork and exec."""

    who: users.Identity
    env: dict[str, str]
    workdir_fd: int
    seccomp_program: bytes


def _spawn(spec: LaunchSpec, app: _Exec) -> int:
    """Fork and exec the app; raise _SetupFailed if exec fails (learnt via a CLOEXEC pipe)."""
    errors_r, errors_w = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    pid = os.fork()
    if pid == 0:
        _exec_app(spec, app, errors_w)
    os.close(errors_w)
    os.close(app.workdir_fd)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda s, _f: _forward(pid, s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    message = _read_all(errors_r)
    if message:
        code, _, text = message.partition(" ")
        raise _SetupFailed(text, int(code))
    return pid


def _exec_app(spec: LaunchSpec, app: _Exec, errors: int) -> NoReturn:
    try:
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        security.confine(app.who, app.seccomp_program)
        _enter_workdir(spec.workdir, app.workdir_fd)
        # Every fd but 0-2 and the CLOEXEC error pipe: none of the init's host fds survive.
        os.closerange(3, errors)
        os.closerange(errors + 1, 1 << 20)
        os.execvpe(spec.argv[0], list(spec.argv), app.env)
    except OSError as exc:
        code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXEC
        os.write(errors, f"{code} cannot run {spec.argv[0]!r}: {exc.strerror}".encode())
    os._exit(EXIT_NOT_FOUND)


def _enter_workdir(path: str, fd: int) -> None:
    try:
        os.fchdir(fd)  # as the user, like Docker: a dir the user cannot enter fails the start
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enter working directory {path}: {exc.strerror}") from None


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _supervise(app: int) -> int:
    """Reap every child (we are PID 1) until the app exits; return its exit code."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == app:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _report(fd: int, line: str) -> None:
    # OSError: the engine stopped listening; the state files still tell the story.
    with contextlib.suppress(OSError):
        os.write(fd, f"{line}\n".encode())


def _write_state(state_fd: int, name: str, text: str) -> None:
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=state_fd)
    os.write(fd, text.encode())
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=state_fd, dst_dir_fd=state_fd)


def _fail(spec: LaunchSpec, state_fd: int, message: str, code: int) -> NoReturn:
    print(f"paas: container failed to start: {message}", file=sys.stderr, flush=True)
    _write_state(state_fd, ERROR_FILE, message)
    _write_state(state_fd, EXIT_CODE_FILE, str(code))
    _report(spec.report_fd, f"error {message}")
    os._exit(code)
