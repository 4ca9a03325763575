"""The container's PID 1: finish setup, start the app, forward signals, reap, log, record the exit.

After pivot_root the host's files are gone, so everything used here is imported up front,
and the exit code and the log are written through a directory fd opened before the pivot.
The app's stdout and stderr are pipes to us: we timestamp each line (runtime.logs) as we
read it, so the log needs no host process and keeps growing when the platform is down.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import time
import warnings  # noqa: F401  os.execvpe imports it lazily; it must be loaded before pivot_root
from dataclasses import dataclass  # launchspec loads it anyway

from paas.engine.runtime import (
    _libc,
    logwriter,
    netconf,
    process,
    rootfs,
    safepath,
    seccomp,
    security,
    users,
)
from paas.engine.runtime.launchspec import ERROR_FILE, EXIT_CODE_FILE, LaunchSpec
from paas.errors import ContainerError

TYPE_CHECKING = False  # the launcher starts with every container: keep its imports few
if TYPE_CHECKING:
    from typing import NoReturn

FORWARDED_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
)
# Python ignores these at startup; an ignored disposition would survive exec into the app.
RESET_SIGNALS = (*FORWARDED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# After the app exits, how long a process it left behind may keep its output pipes open.
DRAIN_GRACE_S = 0.5
READ_SIZE = 1 << 18


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
        os._exit(process.EXIT_SETUP_FAILED)
    try:
        app = _setup_and_spawn(spec)
    except _SetupFailed as exc:
        _fail(spec, state_fd, str(exc), exc.code)
    except Exception as exc:  # an entry point: every failure must reach the log and the state
        message = str(exc) if isinstance(exc, OSError | ContainerError) else repr(exc)
        _fail(spec, state_fd, message, process.EXIT_SETUP_FAILED)
    _report(spec.report_fd, "ok")
    os.close(spec.report_fd)
    code = _supervise(app, _log_writer(spec, state_fd))
    _write_state(state_fd, EXIT_CODE_FILE, str(code))
    os._exit(code)


def _setup_and_spawn(spec: LaunchSpec) -> _Running:
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


@dataclass(frozen=True, slots=True)
class _Running:
    """The app's pid, the read ends of its stdout and stderr, and our signal wakeup fd."""

    pid: int
    stdout: int
    stderr: int
    wakeup: int


def _spawn(spec: LaunchSpec, app: _Exec) -> _Running:
    """Fork and exec the app; raise _SetupFailed if exec fails (learnt via a CLOEXEC pipe)."""
    errors_r, errors_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # A chatty app then wakes us (and we write the log) in big batches, not 16 pages at a time.
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, READ_SIZE)
    wakeup = _signal_wakeup()
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    pid = os.fork()
    if pid == 0:
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        _exec_app(spec, app, errors_w)
    for fd in (errors_w, out_w, err_w, app.workdir_fd):
        os.close(fd)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda s, _f: _forward(pid, s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    message = process.read_all(errors_r)
    if message:
        code, _, text = message.partition(" ")
        raise _SetupFailed(text, int(code))
    return _Running(pid, out_r, err_r, wakeup)


def _signal_wakeup() -> int:
    """A pipe that gets a byte on every signal we handle, SIGCHLD included: the log loop
    polls it next to the app's output, and reaps when it wakes."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    os.set_blocking(read_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    return read_end


def _exec_app(spec: LaunchSpec, app: _Exec, errors: int) -> NoReturn:
    try:
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        security.confine(app.who, app.seccomp_program)
        _enter_workdir(spec.workdir, app.workdir_fd)
        # None of our host fds survive into the process.
        process.exec_or_report(spec.argv, app.env, errors)
    except (OSError, ContainerError) as exc:  # the setup before exec failed
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        os.write(errors, f"{process.EXIT_SETUP_FAILED} {why}".encode())
    os._exit(process.EXIT_NOT_FOUND)


def _enter_workdir(path: str, fd: int) -> None:
    try:
        os.fchdir(fd)  # as the user, like Docker: a dir the user cannot enter fails the start
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enter working directory {path}: {exc.strerror}") from None


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _log_writer(spec: LaunchSpec, state_fd: int) -> logwriter.LogWriter:
    if not spec.log_max_bytes:
        return logwriter.LogWriter(1)  # Runtime.run reads the pipe and keeps the log itself
    try:
        return logwriter.LogWriter.open(state_fd, spec.log_max_bytes, spec.log_files)
    except OSError:  # the engine's fd on the same file: unrotated, but PID 1 stays up
        return logwriter.LogWriter(1)


def _supervise(app: _Running, writer: logwriter.LogWriter) -> int:
    """Log the app's output and reap every child (we are PID 1) until the app has exited and
    its output is drained (or DRAIN_GRACE_S passed); return its exit code."""
    splitters = {
        app.stdout: logwriter.LineSplitter(logwriter.STDOUT),
        app.stderr: logwriter.LineSplitter(logwriter.STDERR),
    }
    poller = select.poll()
    for fd in (app.wakeup, *splitters):
        poller.register(fd, select.POLLIN)
    code: int | None = None
    deadline: float | None = None
    while splitters:
        timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        events = poller.poll(timeout)
        if not events and deadline is not None:
            break
        for fd, _ in events:
            if fd == app.wakeup:
                _drain(fd)
                code = _reap(app.pid) if code is None else code
            else:
                _log_chunk(fd, splitters, poller, writer)
        if code is not None and deadline is None:
            deadline = time.monotonic() + DRAIN_GRACE_S
    stamp = logwriter.stamp_now()
    writer.write(b"".join(splitter.finish(stamp) for splitter in splitters.values()))
    return _reap_until(app.pid) if code is None else code


def _log_chunk(
    fd: int, splitters: dict[int, logwriter.LineSplitter], poller: select.poll, writer: logwriter.LogWriter
) -> None:
    chunk = os.read(fd, READ_SIZE)
    stamp = logwriter.stamp_now()  # when the line was read: as close to its writing as we get
    if chunk:
        writer.write(splitters[fd].feed(chunk, stamp))
        return
    writer.write(splitters.pop(fd).finish(stamp))
    poller.unregister(fd)
    os.close(fd)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _reap(app: int) -> int | None:
    """Reap whatever exited; the app's exit code if it was among them."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == app:
            code = process.exit_code(status)


def _reap_until(app: int) -> int:
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == app:
            return process.exit_code(status)




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
    text = f"paas: container failed to start: {message}\n".encode()
    # stderr: the log file or Runtime.run's pipe, so it reaches the user as the app's would
    logwriter.LogWriter(2).write(logwriter.LineSplitter(logwriter.STDERR).feed(text, logwriter.stamp_now()))
    _write_state(state_fd, ERROR_FILE, message)
    _write_state(state_fd, EXIT_CODE_FILE, str(code))
    _report(spec.report_fd, f"error {message}")
    os._exit(code)
