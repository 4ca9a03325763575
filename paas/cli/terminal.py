"""The CLI's end of a container's pty: raw mode, copying both ways, the window size.

The exec'd process has the pty's slave as its terminal; we hold the master and stand in
for a terminal emulator: what the user types goes in unchanged (raw mode, so ^C reaches the
container as a byte), what comes out is written to our stdout, and resizes follow SIGWINCH.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty
from collections.abc import Callable, Iterator

CHUNK = 65536
_WINSIZE = "HHHH"


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal at `fd`, None when it is not one."""
    if not os.isatty(fd):
        return None
    rows, columns, _, _ = struct.unpack(
        _WINSIZE, fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack(_WINSIZE, 0, 0, 0, 0)))
    return rows, columns


def _set_size(master: int, size: tuple[int, int] | None) -> None:
    if size is not None:
        with contextlib.suppress(OSError):  # the pty is going away
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack(_WINSIZE, *size, 0, 0))


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal at `fd` (if it is one) into raw mode; restore it after."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: what was typed ahead still counts
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(stdin: int | None, stdout: int) -> Callable[[int, int], None]:
    """An `attach` for Runtime.exec: copy `stdin` (None: nothing) in and the output out."""

    def attach(master: int, done: int) -> None:
        size_from = stdin if stdin is not None and os.isatty(stdin) else stdout
        previous = signal.signal(signal.SIGWINCH, lambda _s, _f: _set_size(
            master, window_size(size_from)))
        try:
            with raw_mode(stdin) if stdin is not None else contextlib.nullcontext():
                _copy(master, stdin, stdout, done)
        finally:
            signal.signal(signal.SIGWINCH, previous)

    return attach


def _copy(master: int, stdin: int | None, stdout: int, done: int) -> None:
    sources = [master, done] + ([stdin] if stdin is not None else [])
    while True:
        ready = select.select(sources, [], [])[0]
        if master in ready and not _pump(master, stdout):
            return
        if stdin is not None and stdin in ready:
            data = os.read(stdin, CHUNK)
            if not data:  # our input ended: the process keeps its terminal, we stop typing
                sources.remove(stdin)
                stdin = None
            else:
                _write_all(master, data)
        if done in ready and master not in ready:  # it exited and we hold all it wrote
            return


def _pump(master: int, stdout: int) -> bool:
    """Copy one chunk of output; False once the pty is closed on the container's side."""
    try:
        data = os.read(master, CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:  # every holder of the slave is gone
            return False
        raise
    if not data:
        return False
    _write_all(stdout, data)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
