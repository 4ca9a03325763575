"""The CLI's end of a container's pty: raw mode, copying both ways, the window size.

The exec'd process has the pty's slave as its terminal; we hold the master and stand in
for a terminal emulator: what the user types goes in unchanged (raw mode, so ^C reaches the
container as a byte), what comes out is written to our stdout, and resizes follow SIGWINCH.
`run -i`/`-t` (attach) talks to the container's shim over a socket instead: our input goes
in, its output comes out in frames; with -t a dup of the master only serves the resizes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty
from collections.abc import Callable, Iterable, Iterator

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
def signals_handled(signums: Iterable[int], handler: Callable[[int, object], None]) -> Iterator[None]:
    """`handler` for each of `signums` while the block runs; the previous handlers after."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


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
        with _resizes_followed(master, stdin, stdout), \
                raw_mode(stdin) if stdin is not None else contextlib.nullcontext():
            _copy(master, stdin, stdout, done)

    return attach


def size_source(stdin: int | None, stdout: int) -> int:
    """The fd whose window size the container's terminal takes: our stdin's, else stdout's."""
    return stdin if stdin is not None and os.isatty(stdin) else stdout


@contextlib.contextmanager
def _resizes_followed(master: int, stdin: int | None, stdout: int) -> Iterator[None]:
    """Resize the pty at `master` as our terminal is resized (SIGWINCH) until the end."""
    size_from = size_source(stdin, stdout)
    previous = signal.signal(signal.SIGWINCH, lambda _s, _f: _set_size(master, window_size(size_from)))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


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


# -- `run -i`/`-t`: Runtime.attach_start's socket ------------------------------------------

FRAME_HEADER = 8  # Docker's: [1 stdout | 2 stderr, 0, 0, 0, uint32 BE size]


def attach(sock: socket.socket, stdin: int | None, tty: bool, stdout: int = 1, stderr: int = 2) -> None:
    """Copy `stdin` (None: nothing) to the container and its output out until it is done.
    With `tty`, the terminal at `stdin` is raw and resizes follow SIGWINCH."""
    master = _receive_master(sock) if tty else -1
    try:
        with _resizes_followed(master, stdin, stdout) if master >= 0 else contextlib.nullcontext(), \
                raw_mode(stdin) if tty and stdin is not None else contextlib.nullcontext():
            _copy_frames(sock, stdin, (stdout, stderr))
    finally:
        if master >= 0:
            os.close(master)


def _receive_master(sock: socket.socket) -> int:
    """The dup of the pty master the container's init sends first; -1 if it did not."""
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0] if fds else -1


def _copy_frames(sock: socket.socket, stdin: int | None, outputs: tuple[int, int]) -> None:
    """Never blocked sending: the container may be waiting for us to take its output before
    it reads more of our input (`cat`)."""
    sock.setblocking(False)
    frames = unsent = b""
    while True:
        readers = [sock] + ([stdin] if stdin is not None and not unsent else [])
        readable, writable = select.select(readers, [sock] if unsent else [], [])[:2]
        if sock in readable:
            try:
                data = sock.recv(CHUNK)
            except ConnectionResetError:  # it ended with input of ours unread: not an error
                data = b""
            if not data:  # the app exited and all its output is here
                return
            frames = _write_frames(frames + data, outputs)
        if writable:
            try:
                unsent = unsent[sock.send(unsent):]
            except BlockingIOError:
                pass
            except OSError:  # it closed its input; we still want its output
                unsent, stdin = b"", None
        if stdin is not None and stdin in readable:
            unsent = os.read(stdin, CHUNK)
            if not unsent:  # the app's stdin ends too
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                stdin = None


def _write_frames(data: bytes, outputs: tuple[int, int]) -> bytes:
    """Write each whole frame to stdout or stderr; what is left of a partial one."""
    while len(data) >= FRAME_HEADER:
        size = int.from_bytes(data[4:FRAME_HEADER], "big")
        if len(data) < FRAME_HEADER + size:
            break
        _write_all(outputs[data[0] == 2], data[FRAME_HEADER:FRAME_HEADER + size])
        data = data[FRAME_HEADER + size:]
    return data
