"""The launcher: a fork of the engine process, one per container start (see spawn.Launch).

The forked child leaves the engine's session, stdio and fds behind, wipes the engine's
environment and command line from its memory (they would show as /proc/1/environ and
/proc/1/cmdline in the container), joins the container's cgroups, unshares the namespaces,
forks the container's init (PID 1 of the new pid namespace) and reports the init's host pid
on the report pipe. While the init starts, it does a share of the init's setup in the
namespaces they share (the hostname, the overlay root), tells the init how that went, and
exits. The container therefore outlives whichever platform process asked for it.

Every start forks this big process twice (launcher, init) and once more for the app: what
the children would each compute again is computed once here, before the fork (prepare).

The engine may run threads: after fork only this thread exists and a lock another thread
held stays held, so the child calls only system calls (os.*, ctypes) and code imported
here up front, never logging or print, and always ends in os._exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os

from paas.engine.runtime import _libc, caps, init, process, rootfs, seccomp, security
from paas.engine.runtime.launchspec import LaunchSpec
from paas.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

BASE_NAMESPACES = _libc.CLONE_NEWNS | _libc.CLONE_NEWUTS | _libc.CLONE_NEWIPC | _libc.CLONE_NEWPID
EXIT_LAUNCH_FAILED = 125
PROC_TITLE = b"paas-init"
# The libc functions (runtime._libc) the launcher, the init and the app's process call.
LIBC_CALLS = ("unshare", "mount", "umount2", "syscall", "sethostname", "prctl", "capset")
# /proc/PID/stat fields after the command name: arg_start, arg_end, env_start, env_end
# (fields 48-51 of proc(5), counted from field 3).
_ARG_START, _ENV_END = 45, 48

_environ = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "environ")
_EMPTY_ENVIRON = (ctypes.c_char_p * 1)()  # {NULL}: an environment with no entries


def namespaces(network: str) -> int:
    return BASE_NAMESPACES if network == "host" else BASE_NAMESPACES | _libc.CLONE_NEWNET


def prepare() -> None:
    """What every start would compute again, done in the engine before it forks the
    launcher: the launcher and the init are copies of it, so they find it done."""
    seccomp.build(os.uname().machine)  # cached; ContainerError here fails the start early
    _memory_blocks()
    caps.last_cap()
    init.prepare()
    for name in LIBC_CALLS:  # ctypes looks a function up on first use and keeps it
        getattr(_libc._libc, name)


def child(spec: LaunchSpec, output_fd: int, cgroup_files: tuple[bytes, ...]) -> NoReturn:
    """The forked launcher; reports `pid N` or `error MESSAGE`, then exits."""
    # The heap is the engine's, garbage included: a file or socket object it dropped would,
    # once collected here, close its fd NUMBER, which by then names one of ours (a pipe, the
    # log). No collection in the launcher, nor in the init and app process it forks.
    gc.disable()
    try:
        os.setsid()  # a terminal's ^C must not reach the container
        _stdio(output_fd)
        process.close_fds_except({0, 1, 2, spec.report_fd, spec.go_fd})
        _forget_engine()
        security.hide_from_ptrace()  # inherited by the init, for the init's whole life
        for path in cgroup_files:  # before the fork: the init is born in them
            _join_cgroup(path)
        _libc.unshare(namespaces(spec.network))
        shared_r, shared_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(shared_w)
                init.main(spec, shared_r)
            finally:
                os._exit(EXIT_LAUNCH_FAILED)
        os.close(shared_r)
        os.write(spec.report_fd, b"pid %d\n" % pid)
    except BaseException as exc:  # noqa: BLE001  a forked child must never return
        _report_failure(spec.report_fd, exc)
        os._exit(EXIT_LAUNCH_FAILED)
    _share_setup(spec, shared_w)
    os._exit(0)


def _share_setup(spec: LaunchSpec, result_fd: int) -> None:
    """Set up what we share with the init while it starts, waits for "go" and sets up the
    network: the hostname and the overlay root (rootfs.mount_root). The init waits for our
    result before it mounts the rest: `ok`, or why we failed."""
    try:
        _libc.sethostname(spec.hostname)
        rootfs.mount_root(spec)
        result = b"ok"
    except BaseException as exc:  # noqa: BLE001  a forked child must never return
        text = str(exc) if isinstance(exc, OSError | ContainerError) else repr(exc)
        result = text.encode() or type(exc).__name__.encode()
    with contextlib.suppress(OSError):  # the init is gone: nobody is left to tell
        os.write(result_fd, result[: init.RESULT_SIZE])  # one write: the init reads it at once


def _stdio(output_fd: int) -> None:
    os.dup2(output_fd, 1)  # first: output_fd may be 0
    os.dup2(output_fd, 2)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    if devnull != 0:
        os.close(devnull)


def _forget_engine() -> None:
    """Zero the environment block and overwrite the command line in our memory, and empty
    the C `environ` and os.environ: the init and its children see nothing of the engine's."""
    arg_start, arg_end, env_start, env_end = _memory_blocks()
    if 0 < env_start < env_end:  # 0: a kernel that does not tell (before 3.5)
        ctypes.memset(env_start, 0, env_end - env_start)
    if 0 < arg_start < arg_end:
        ctypes.memset(arg_start, 0, arg_end - arg_start)
        title = PROC_TITLE[: arg_end - arg_start - 1]
        ctypes.memmove(arg_start, title, len(title))
    _environ.value = ctypes.addressof(_EMPTY_ENVIRON)
    os.environ._data.clear()  # type: ignore[attr-defined]  # no unsetenv: it takes a lock


@functools.cache  # fixed at exec, and a fork has its parent's addresses: read once (prepare)
def _memory_blocks() -> tuple[int, int, int, int]:
    """Where the kernel put this process's command line and environment: arg_start,
    arg_end, env_start, env_end."""
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    fields = raw[raw.rindex(b")") + 2 :].split()
    start, end, env_start, env_end = (int(f) for f in fields[_ARG_START : _ENV_END + 1])
    return start, end, env_start, env_end


def _join_cgroup(path: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # 0: the writer itself
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot join cgroup {os.fsdecode(path)}: {exc.strerror}") from None


def _report_failure(report_fd: int, exc: BaseException) -> None:
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    message = message or type(exc).__name__
    try:
        os.write(2, f"paas: container failed to start: {message}\n".encode())
        os.write(report_fd, f"error {message}\n".encode())
    except OSError:
        pass  # the engine is gone; nobody is left to tell
