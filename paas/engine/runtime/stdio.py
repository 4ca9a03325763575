"""Pipes in front of a caller's stdio, so an exec'd process never holds a host fd.

Given the caller's terminal or a host file as its stdin/stdout, a process in the container
could reopen it through /proc/self/fd/N, or leave a child behind that keeps reading the
user's keystrokes after the exec ended. It gets pipes instead, and we copy, as Docker does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select

CHUNK = 65536


class Relay:
    """Three pipes; `child` are the ends for the process, `run` copies until it exits."""

    def __init__(self, stdio: tuple[int, int, int]) -> None:
        self._ours = stdio
        in_r, self._in_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        self.child = (in_r, out_w, err_w)
        os.set_blocking(self._in_w, False)  # a process that reads nothing must not stall output

    def close_child_ends(self) -> None:
        for fd in self.child:
            os.close(fd)
        self.child = (-1, -1, -1)

    def run(self, done: int) -> None:
        """Copy until the pidfd `done` turns readable and what the process wrote is out."""
        sources = {self._out_r: self._ours[1], self._err_r: self._ours[2]}
        stdin: int | None = self._ours[0]
        pending = b""
        while sources:
            readers = [*sources, done] + ([stdin] if stdin is not None and not pending else [])
            writers = [self._in_w] if pending else []
            ready, writable, _ = select.select(readers, writers, [])
            for fd in [fd for fd in ready if fd in sources]:
                if not _copy(fd, sources[fd]):
                    del sources[fd]
            if stdin is not None and stdin in ready:
                pending = os.read(stdin, CHUNK)
                if not pending:
                    self._close_input()
                    stdin = None
            if writable:
                pending = self._feed(pending)
            if done in ready and not any(fd in ready for fd in sources):
                return  # it exited and nothing more is waiting (a child may hold the pipes)

    def _feed(self, data: bytes) -> bytes:
        try:
            return data[os.write(self._in_w, data):]
        except BlockingIOError:
            return data
        except BrokenPipeError:  # it stopped reading: drop the rest, as a pipe would
            return b""

    def _close_input(self) -> None:
        if self._in_w >= 0:
            os.close(self._in_w)
            self._in_w = -1

    def close(self) -> None:
        for fd in (self._in_w, self._out_r, self._err_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._in_w = self._out_r = self._err_r = -1


def _copy(source: int, target: int) -> bool:
    """Copy one chunk; False at end of input."""
    try:
        data = os.read(source, CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:
            return False
        raise
    view = memoryview(data)
    while view:
        view = view[os.write(target, view):]
    return bool(data)
