"""The container's PID 1 until the app is forked: finish setup, then become the shim.

After "go" we set the container up (eth0 or lo; /proc, /dev, /sys once the launcher, our
parent, has set the hostname and mounted the overlay root; pivot_root) and fork the app's
process. It finds its user and workdir and confines itself while we exec the shim (shim.c,
opened before pivot_root, when the host's files were still reachable), and execs once the
shim writes the start byte. The shim is a small static program that logs the app's output, forwards every
signal, reaps and writes `exit_code` into the state dir; Python would cost each running
container ~10 MiB.
After pivot_root the host's files are gone, so everything used here is imported up front.
With `-t` the app's stdio is a pty of the container's devpts (the shim reads the master),
with `-i` its stdin a pipe the shim feeds from the attached client (Runtime.attach_start).
"""

from __future__ import annotations

import _signal  # signal's C functions: its wrappers make enums of each signal, slow in a fork
import array
import contextlib
import fcntl
import os
import signal
import socket
import termios
import warnings  # noqa: F401  os.execvpe imports it lazily; it must be loaded before pivot_root
from dataclasses import dataclass  # launchspec loads it anyway

from paas.engine.runtime import (
    logwriter,
    netconf,
    process,
    rootfs,
    safepath,
    seccomp,
    security,
    users,
)
from paas.engine.runtime.launchspec import ERROR_FILE, EXIT_CODE_FILE, LOG_FILE, LaunchSpec
from paas.errors import ContainerError

TYPE_CHECKING = False  # the launcher starts with every container: keep its imports few
if TYPE_CHECKING:
    from typing import NoReturn

# A chatty app then wakes the shim (and it writes the log) in big batches.
PIPE_SIZE = 1 << 18
START = b"s"  # the shim's go-ahead to the app's process (shim.c writes it)
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431  # termios lacks both
WINSIZE_LEN = 8  # struct winsize: what Runtime.attach_start sends first with a tty
RESULT_SIZE = 4096  # the launcher's result (launch._share_setup): one atomic pipe write
# The signals the engine ignores or catches when it forks the launcher (see prepare);
# all of them until prepare has looked.
_NOT_DEFAULT: list[int] = sorted(_signal.valid_signals())


def main(spec: LaunchSpec, launcher_fd: int) -> NoReturn:
    """`launcher_fd`: where the launcher tells how its share of the setup went."""
    # Blocked, a signal to PID 1 waits for the shim's signalfd instead of being dropped.
    _signal.pthread_sigmask(signal.SIG_BLOCK, _signal.valid_signals())
    state_fd = os.open(spec.state_dir, os.O_RDONLY | os.O_DIRECTORY)
    go = os.read(spec.go_fd, 2)
    os.close(spec.go_fd)
    if go != b"go":  # the engine gave up on this start
        os._exit(process.EXIT_SETUP_FAILED)
    try:
        attach = -1 if spec.attach_fd < 0 else _take_attach(spec.attach_fd, state_fd)
        shim = os.open(spec.shim, os.O_RDONLY | os.O_CLOEXEC)  # before pivot_root hides it
        app = _setup_and_spawn(spec, attach, launcher_fd)
    except Exception as exc:  # an entry point: every failure must reach the log and the state
        message = str(exc) if isinstance(exc, OSError | ContainerError) else repr(exc)
        _fail(spec, state_fd, message, process.EXIT_SETUP_FAILED)
    _exec_shim(spec, state_fd, shim, app, attach)


def _take_attach(fd: int, state_fd: int) -> int:
    """The launcher gave us the attach socket as stdout and stderr: move it up and put the
    log there instead, where an unattached start has it (our errors and the shim's go there)."""
    attach = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    log = os.open(LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640,
                  dir_fd=state_fd)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return attach


def _setup_and_spawn(spec: LaunchSpec, attach: int, launcher_fd: int) -> _Running:
    program = seccomp.build(os.uname().machine)  # an unknown architecture never runs unfiltered
    security.own_cgroup_namespace(spec.cgroupns)  # born in our cgroup: it becomes the root
    if spec.net is not None:  # meanwhile, the launcher mounts our root (launch._share_setup)
        net = spec.net
        netconf.configure_eth0(net.peer, net.ip, net.netmask, net.gateway)
    elif spec.network == "none":
        netconf.loopback_up()
    _launcher_done(launcher_fd)
    rootfs.mount_kernel_trees(spec)
    rootfs.pivot(spec.rootfs)
    stdio = _stdio(spec, attach)  # after pivot_root: a pty of the container's devpts
    return _spawn(spec, program, stdio)


def _launcher_done(fd: int) -> None:
    """Wait for the launcher's share of the setup (hostname, the overlay root); its
    failure fails the start. One read: the launcher writes its result at once and then
    exits, which takes it a while (EOF would wait for that)."""
    try:
        result = os.read(fd, RESULT_SIZE).decode(errors="replace")
    finally:
        os.close(fd)
    if result != "ok":
        raise ContainerError(result or "the container launcher died during setup")


@dataclass(frozen=True, slots=True)
class _Stdio:
    """The app's fds 0-2 (-1: keep /dev/null) and our ends: what the shim reads (a pty
    master, or pipes) and where it writes the attached client's input (-1: nowhere)."""

    app: tuple[int, int, int]
    stdout: int
    stderr: int
    stdin: int = -1


@dataclass(frozen=True, slots=True)
class _Running:
    """The app's process, waiting for the start byte, and our ends of its stdio."""

    pid: int
    start: int
    errors: int
    stdio: _Stdio


def _stdio(spec: LaunchSpec, attach: int) -> _Stdio:
    if spec.tty:
        master, slave = _open_pty(attach)
        return _Stdio((slave, slave, slave), master, -1, master)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    in_r, in_w = os.pipe() if spec.interactive else (-1, -1)
    return _Stdio((in_r, out_w, err_w), out_r, err_r, in_w)


def _open_pty(attach: int) -> tuple[int, int]:
    """A pty of the container's own devpts; an attached client sent its window size first."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
    # TIOCGPTPEER opens the slave of this very master, no path lookup to race with.
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if attach >= 0:
        size = os.read(attach, WINSIZE_LEN)
        if size.strip(b"\0"):
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    return master, slave


def _spawn(spec: LaunchSpec, seccomp_program: bytes, stdio: _Stdio) -> _Running:
    """Fork the app's process. It finds its user and workdir and confines itself at once,
    while we exec the shim (the two run in parallel), but execs only once the shim says
    start: nothing of the container runs while PID 1 is between exec and becoming
    non-dumpable."""
    start_r, start_w = os.pipe()
    errors_r, errors_w = os.pipe()  # CLOEXEC: EOF once exec worked, else why it failed
    pid = os.fork()
    if pid == 0:
        _exec_app(spec, seccomp_program, stdio.app, start_r, errors_w)
    for fd in {start_r, errors_w, *stdio.app} - {-1}:
        os.close(fd)
    return _Running(pid, start_w, errors_r, stdio)


def _exec_app(
    spec: LaunchSpec, seccomp_program: bytes, stdio: tuple[int, int, int], start: int,
    errors: int,
) -> NoReturn:
    """Its failures reach the shim on `errors`, which reports them as the init's own."""
    try:
        for target, fd in enumerate(stdio):
            if fd >= 0:
                os.dup2(fd, target)
        os.setsid()
        if spec.tty:  # its controlling terminal: job control, ^C and SIGWINCH work
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        who = users.resolve(spec.user)  # pivot_root is done: the container's /etc
        env = process.environ(spec.env, spec.hostname, who.home, spec.tty)
        workdir = safepath.open_workdir(spec.workdir)
        security.confine(who, seccomp_program)
        _enter_workdir(spec.workdir, workdir)
        if os.read(start, 1) != START:  # the shim never started
            os._exit(process.EXIT_SETUP_FAILED)
        _default_signals()  # last: until exec, no signal may run a handler of ours
        # None of our host fds survive into the process.
        process.exec_or_report(spec.argv, env, errors)
    except Exception as exc:  # the setup before exec failed; a forked child never returns
        with contextlib.suppress(OSError):  # the shim is gone: nobody is left to tell
            os.write(errors, f"{process.EXIT_SETUP_FAILED} {_why(exc)}".encode())
    os._exit(process.EXIT_NOT_FOUND)


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) if isinstance(exc, OSError | ContainerError) else repr(exc)


def prepare() -> None:
    """Run by the engine right before it forks the launcher (launch.prepare): the app's
    process inherits the engine's signal dispositions, which nothing in between changes,
    and finding them out costs a fork much more than it costs the engine."""
    _NOT_DEFAULT[:] = _changed_signals()


def _default_signals() -> None:
    """An ignored signal stays ignored across exec (Python ignores SIGPIPE and SIGXFSZ, the
    engine may ignore more), a blocked one blocked: give the app the defaults, unblocked."""
    for signum in _NOT_DEFAULT:
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _changed_signals() -> list[int]:
    """The signals whose disposition is not the default (SigIgn | SigCgt of proc(5))."""
    try:
        with open("/proc/self/status", "rb") as status:
            lines = status.read().splitlines()
        mask = 0
        for line in lines:
            if line.startswith((b"SigIgn:", b"SigCgt:")):
                mask |= int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):  # cannot tell: reset them all
        return sorted(_signal.valid_signals())
    return [bit + 1 for bit in range(mask.bit_length()) if mask >> bit & 1]


def _enter_workdir(path: str, fd: int) -> None:
    try:
        os.fchdir(fd)  # as the user, like Docker: a dir the user cannot enter fails the start
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enter working directory {path}: {exc.strerror}") from None


def _exec_shim(spec: LaunchSpec, state_fd: int, shim: int, app: _Running, attach: int) -> NoReturn:
    """Become the shim, handing it the fds and settings on argv (the order is shim.c's)."""
    stdio = app.stdio
    passed = (app.start, app.errors, stdio.stdout, stdio.stderr, state_fd, spec.report_fd)
    argv = ["paas-shim", *map(str, passed), str(app.pid), str(spec.log_max_bytes),
            str(spec.log_files)]
    if spec.tty or spec.interactive or attach >= 0:
        argv += [str(int(spec.tty)), str(stdio.stdin), str(attach)]
        if spec.tty and attach >= 0:
            _send_master(attach, stdio.stdout)
    kept = {*passed, stdio.stdin, attach} - {-1}
    process.close_fds_except({0, 1, 2, shim, *kept})
    for fd in kept:
        os.set_inheritable(fd, True)
    try:
        os.execve(shim, argv, {})  # fexecve: the binary is static, nothing else to load
    except OSError as exc:
        os.kill(app.pid, signal.SIGKILL)
        _fail(spec, state_fd, f"cannot start the container's init: {exc}", process.EXIT_SETUP_FAILED)


def _send_master(attach: int, master: int) -> None:
    """A dup of the master for the client, whose TIOCSWINSZ on it resizes the app's pty;
    before the shim sends any output, so it comes first on the socket."""
    sock = socket.socket(fileno=attach)
    try:
        fds = array.array("i", [master])
        with contextlib.suppress(OSError):  # the client is gone: the app runs detached
            sock.sendmsg([b"T"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    finally:
        sock.detach()


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
