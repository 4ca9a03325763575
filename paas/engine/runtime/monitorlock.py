"""The monitor's lock: at most one monitor per engine root, and who it is.

The lock is a flock on `<root>/monitor.lock`, which holds the holder's "pid starttime" so
another process can tell whether a monitor runs, and stop it by PID knowing it is that
monitor and not a process that inherited its pid. The kernel drops the lock when the
holder dies, however it dies. Other per-root daemons (the engine server) take the same kind
of lock under their own file `name`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

from paas.engine.runtime import process

LOCK_FILE = "monitor.lock"
SERVER_LOCK_FILE = "server.lock"  # `paas engine serve`, the CLI's warm server
HOLDER_WAIT_S = 1.0  # a monitor writes its pid right after it takes the lock
WAIT_POLL_S = 0.05


def lock_path(root: Path, name: str = LOCK_FILE) -> Path:
    return root / name


def acquire(root: Path, wait: bool = False, name: str = LOCK_FILE) -> int | None:
    """The lock's fd (keep it open to hold it), or None if another monitor holds it and
    not `wait`. Records this process as the holder."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(root, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    me = os.getpid()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{me} {process.read_starttime(me)}\n".encode(), 0)
    return fd


def is_held(root: Path, name: str = LOCK_FILE) -> bool:
    try:
        fd = os.open(lock_path(root, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder(root: Path, name: str = LOCK_FILE) -> process.ProcessRef | None:
    """The running monitor of this root, or None."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while is_held(root, name):
        try:
            pid, starttime = lock_path(root, name).read_text().split()
            ref = process.ProcessRef(int(pid), int(starttime))
        except (OSError, ValueError):  # taken, not yet written
            if time.monotonic() > deadline:
                return None
            time.sleep(WAIT_POLL_S)
            continue
        return ref if process.is_alive(ref) else None
    return None


def stop(root: Path, timeout: float, kill_wait: float, name: str = LOCK_FILE) -> bool:
    """Stop this root's monitor (SIGTERM, SIGKILL after `timeout`); False if none ran."""
    ref = holder(root, name)
    if ref is None:
        return False
    process.terminate(ref, signal.SIGTERM, timeout, kill_wait)
    return True
