"""Process identity and waiting for processes that are not our children.

A container's init is reparented to the host init as soon as its launcher exits, so it
is never our child: we wait on it with a pidfd and name it by (pid, starttime) so a
recycled pid is never mistaken for it. Zombies count as dead, since the host init may
be slow to reap them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# A shell's exit codes for a process that never ran: setup failed, not executable, not found.
EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127
MAX_FDS = 1 << 20
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

@dataclass(frozen=True, slots=True)
class ProcessRef:
    pid: int
    starttime: int


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def read_starttime(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def is_alive(ref: ProcessRef) -> bool:
    fields = _stat_fields(ref.pid)
    return fields is not None and int(fields[19]) == ref.starttime and fields[0] not in "ZX"


def open_pidfd(ref: ProcessRef) -> int | None:
    """A pidfd for the process, or None when it is gone (or its pid now names another)."""
    try:
        fd = os.pidfd_open(ref.pid)
    except ProcessLookupError:
        return None
    # Opened first, checked second: if the starttime matches now, the fd names our process.
    if not is_alive(ref):
        os.close(fd)
        return None
    return fd


def wait_pidfd(fd: int, timeout: float | None) -> bool:
    """True once the process behind `fd` has exited, False on timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def wait_exit(ref: ProcessRef, timeout: float | None) -> bool:
    fd = open_pidfd(ref)
    if fd is None:
        return True
    try:
        return wait_pidfd(fd, timeout)
    finally:
        os.close(fd)


@contextlib.contextmanager
def mounts_held() -> Iterator[Callable[[ProcessRef], None]]:
    """Hold the mount namespace of the processes passed to the yielded function, and let it
    go in a thread on the way out. A container's mounts then go away after we are done with
    it, not as its init exits: unmounting its overlay syncs the whole disk under the upper
    dir, which can take milliseconds, and we wait for that exit."""
    held: list[int] = []

    def hold(ref: ProcessRef) -> None:
        # Had the pid been reused meanwhile, we would keep another process's namespace a
        # little longer: harmless, and cheaper than closing it here (that unmounts).
        with contextlib.suppress(OSError):  # it exited already: nothing left to hold
            held.append(os.open(f"/proc/{ref.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))

    try:
        yield hold
    finally:
        if held:
            threading.Thread(target=_close_all, args=(held,), daemon=True).start()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def send_signal(ref: ProcessRef, signum: int) -> bool:
    """Signal the process if it is still ours; False when it is already gone."""
    fd = open_pidfd(ref)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, signum)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True



def terminate(ref: ProcessRef, signum: int, timeout: float, kill_wait: float) -> bool:
    """Send `signum`, wait `timeout`, then SIGKILL. True if the process is gone at the end."""
    fd = open_pidfd(ref)
    if fd is None:
        return True
    try:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signum)
        if wait_pidfd(fd, timeout):
            return True
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return wait_pidfd(fd, kill_wait)
    finally:
        os.close(fd)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N after signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def read_all(fd: int) -> str:
    """Everything a pipe holds until its writers close it; the fd is closed after."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def signal_number(text: str) -> int:
    """A signal by number, name or SIG-name (``KILL``, ``SIGTERM``, ``9``); ValueError if none."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise ValueError(f"invalid signal: {text}") from None


def environ(entries: Sequence[str], hostname: str, home: str, tty: bool) -> dict[str, str]:
    """The app's environment: its KEY=VALUE entries over the defaults Docker sets."""
    env = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", hostname)
    env.setdefault("HOME", home)
    if tty:
        env.setdefault("TERM", "xterm")
    return env


def close_fds_except(keep: set[int]) -> None:
    """Close every fd not in `keep`: a child about to exec must hold none of ours."""
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(0, 0) would close everything: close_range(0, ~0U)
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FDS)


def exec_or_report(argv: Sequence[str], env: dict[str, str], errors: int) -> None:
    """Close every fd but 0-2 and the CLOEXEC ``errors`` pipe, then exec. Only returns when
    exec failed, after writing "<exit code> <why>" to ``errors`` for the parent's read_all."""
    close_fds_except({0, 1, 2, errors})
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as exc:
        code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXEC
        os.write(errors, f"{code} cannot run {argv[0]!r}: {exc.strerror}".encode())
