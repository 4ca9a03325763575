"""Writing container logs: the line format and the size-capped rotating writer.

Each line the app writes becomes one record `<RFC3339 UTC, ns> <stdout|stderr> <F|P> <text>`
(the CRI log format): a line longer than MAX_LINE is cut into P(artial) records ending with
an F(ull) one. Timestamps are fixed-width, so comparing them as strings orders them in time.
The container's PID 1 (shim.c) writes the same records and rotates the same way, in C: this
module is the reference its tests compare against. Python still writes with it where the
shim does not run: Runtime.run keeping the log of the pipe it reads, and the init's report
of a failed setup (after pivot_root: it uses only fds and modules imported before, stays
cheap to import, and never raises on a full disk). Reading is runtime.logs.
"""

from __future__ import annotations

import contextlib
import os
import time

from paas.engine.runtime.launchspec import LOG_FILE

MAX_LINE = 16 * 1024
STDOUT = "stdout"
STDERR = "stderr"
FULL = b"F"
PARTIAL = b"P"


def format_time(ns: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class LineSplitter:
    """Turns one stream's chunks into records; keeps the unfinished line between chunks."""

    def __init__(self, stream: str) -> None:
        self.stream = stream.encode()
        self.pending = b""

    def feed(self, chunk: bytes, stamp: bytes) -> bytes:
        """Whole records, for the lines `chunk` completes."""
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        records = self._records(lines, stamp) if lines else b""
        if len(self.pending) > MAX_LINE:  # no newline in sight: do not hold it forever
            cut = (len(self.pending) - 1) // MAX_LINE * MAX_LINE
            records += self._parts(self.pending[:cut], stamp)
            self.pending = self.pending[cut:]
        return records

    def finish(self, stamp: bytes) -> bytes:
        """The last line, kept even without its newline."""
        rest, self.pending = self.pending, b""
        return self._records([rest], stamp) if rest else b""

    def _records(self, lines: list[bytes], stamp: bytes) -> bytes:
        head = b"%s %s F " % (stamp, self.stream)
        if max(map(len, lines)) <= MAX_LINE:  # the usual case, joined in C
            return head + (b"\n" + head).join(lines) + b"\n"
        out = []
        for line in lines:
            cut = max(0, (len(line) - 1) // MAX_LINE * MAX_LINE)
            out.append(self._parts(line[:cut], stamp) + head + line[cut:] + b"\n")
        return b"".join(out)

    def _parts(self, text: bytes, stamp: bytes) -> bytes:
        head = b"%s %s P " % (stamp, self.stream)
        return b"".join(head + text[i:i + MAX_LINE] + b"\n" for i in range(0, len(text), MAX_LINE))


def stamp_now() -> bytes:
    return format_time(time.time_ns()).encode()


class LogWriter:
    """Appends records to `LOG_FILE` in a directory (by fd), rotating it past `max_bytes`
    into LOG_FILE.1 ... LOG_FILE.(files-1); or, with max_bytes 0, to a stream fd as is."""

    def __init__(self, fd: int, dir_fd: int = -1, max_bytes: int = 0, files: int = 1) -> None:
        self.fd = fd
        self.dir_fd = dir_fd
        self.max_bytes = max_bytes
        self.files = max(1, files)
        self.size = os.fstat(fd).st_size if max_bytes else 0

    @classmethod
    def open(cls, dir_fd: int, max_bytes: int, files: int) -> LogWriter:
        return cls(_open_log(dir_fd), dir_fd, max_bytes, files)

    def write(self, records: bytes) -> None:
        """Append whole records; rotate between two records when the next would pass the cap."""
        while self.max_bytes and self.size + len(records) > self.max_bytes:
            cut = records.rfind(b"\n", 0, max(0, self.max_bytes - self.size)) + 1
            if not cut and not self.size:  # one record above the cap: it gets a file of its own
                cut = records.find(b"\n") + 1 or len(records)
            self._write(records[:cut])
            records = records[cut:]
            self._rotate()
        if records:
            self._write(records)

    def close(self) -> None:
        os.close(self.fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:
            return  # a full disk or a reader gone: lose the output, keep the app running
        finally:
            self.size += len(data) - len(view)

    def _rotate(self) -> None:
        try:
            for index in range(self.files - 1, 0, -1):
                older = LOG_FILE if index == 1 else f"{LOG_FILE}.{index - 1}"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(older, f"{LOG_FILE}.{index}", src_dir_fd=self.dir_fd,
                              dst_dir_fd=self.dir_fd)
            if self.files == 1:
                os.unlink(LOG_FILE, dir_fd=self.dir_fd)
            fd = _open_log(self.dir_fd)
        except OSError:  # keep appending to the file we have; try again one cap later
            self.size = 0
            return
        os.close(self.fd)
        self.fd, self.size = fd, 0


def _open_log(dir_fd: int) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    return os.open(LOG_FILE, flags, 0o640, dir_fd=dir_fd)


