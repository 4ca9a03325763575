"""Reading container logs: across rotated files, tail, since, follow; and Runtime.run's
end of the init's output pipe. The format and the writer are in runtime.logwriter.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from paas.engine.runtime.launchspec import LOG_FILE
from paas.engine.runtime.logwriter import (
    FULL,
    MAX_LINE,
    PARTIAL,
    STDERR,
    STDOUT,
    LogWriter,
    format_time,
    stamp_now,
)
from paas.errors import UsageError

__all__ = ["MAX_LINE", "STDERR", "STDOUT", "STREAMS", "LogLine", "LogWriter", "PipeReader", "follow",
           "format_time", "log_files", "parse_since", "read_logs"]

STREAMS = frozenset((STDOUT, STDERR))
_READ_SIZE = 1 << 16
_STAMP_LEN = len("2006-01-02T15:04:05.000000000Z")
_FULL_MARKERS = frozenset((" stdout F ", " stderr F "))
_TEXT_AT = _STAMP_LEN + len(" stdout F ")
_DURATION = r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)"
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
                "h": 3600 * 10**9}


class PipeReader:
    """Runtime.run's end of the init's output pipe: records in, appended to the log as they
    are, and the text of each whole line out (for the build's progress sink)."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer
        self.pending = b""
        self.parts: dict[bytes, list[bytes]] = {}

    def feed(self, chunk: bytes) -> list[str]:
        data = self.pending + chunk
        cut = data.rfind(b"\n") + 1
        records, self.pending = data[:cut], data[cut:]
        if not records:
            return []
        lines = records.decode(errors="replace").split("\n")
        lines.pop()
        # The usual case, in C: every record is ours and a whole line (stamps are fixed-width).
        if not self.parts and {line[_STAMP_LEN:_TEXT_AT] for line in lines} <= _FULL_MARKERS:
            self.writer.write(records)
            return [line[_TEXT_AT:] for line in lines]
        return self._feed_records(records.split(b"\n")[:-1])

    def _feed_records(self, raws: list[bytes]) -> list[str]:
        records = []
        texts = []
        for raw in raws:
            stamp, stream, tag, text = _fields(raw)
            # not from the init (the launcher failed): log it in our format
            records.append(raw + b"\n" if stamp else b"%s stderr F %s\n" % (stamp_now(), raw))
            if tag == PARTIAL:
                self.parts.setdefault(stream, []).append(text)
                continue
            parts = self.parts.pop(stream, None)
            texts.append((b"".join((*parts, text)) if parts else text).decode(errors="replace"))
        self.writer.write(b"".join(records))
        return texts

    def finish(self) -> list[str]:
        rest, self.pending = self.pending, b""
        return self.feed(rest + b"\n") if rest else []


def _fields(raw: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(time, stream, tag, text) of a record; time is empty when `raw` is not one."""
    parts = raw.split(b" ", 3)
    if len(parts) == 4 and parts[2] in (FULL, PARTIAL) and parts[1] in (b"stdout", b"stderr"):
        return parts[0], parts[1], parts[2], parts[3]
    return b"", b"stderr", FULL, raw


# -- reading -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LogLine:
    time: str  # RFC3339 UTC with ns: compare as strings
    stream: str
    text: str


@dataclass(frozen=True, slots=True)
class _Record:
    time: str
    stream: str
    full: bool
    text: bytes


def parse_record(raw: bytes) -> _Record:
    """One record without its newline; a line not in our format (a launcher's message) is
    kept as stderr text with the time of now."""
    stamp, stream, tag, text = _fields(raw)
    return _Record(stamp.decode() or format_time(time.time_ns()), stream.decode(), tag == FULL, text)


class _Joiner:
    """Joins P records to their F record, per stream."""

    def __init__(self) -> None:
        self.parts: dict[str, list[bytes]] = {}

    def lines(self, records: Iterable[_Record]) -> Iterator[LogLine]:
        for record in records:
            if not record.full:
                self.parts.setdefault(record.stream, []).append(record.text)
                continue
            parts = self.parts.pop(record.stream, [])
            text = b"".join((*parts, record.text)) if parts else record.text
            yield LogLine(record.time, record.stream, text.decode(errors="replace"))


def log_files(directory: str | os.PathLike[str]) -> list[str]:
    """The log's files, oldest first."""
    base = os.path.join(directory, LOG_FILE)
    rotated = []
    index = 1
    while os.path.exists(f"{base}.{index}"):
        rotated.append(f"{base}.{index}")
        index += 1
    return [*reversed(rotated), base]


def _read_records(path: str) -> list[_Record]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [parse_record(raw) for raw in data.split(b"\n")[:-1]]  # a half-written last one waits


def read_logs(
    directory: str | os.PathLike[str],
    tail: int | None = None,
    since: str | None = None,
    streams: frozenset[str] = STREAMS,
) -> list[LogLine]:
    """The lines of a container's log across its rotated files, oldest first.

    `tail`: only the last N (after the other filters); `since`: a format_time() string.
    Older files are read only when the newer ones cannot hold the answer."""
    chunks: list[list[_Record]] = []
    full_lines = 0
    for path in reversed(log_files(directory)):
        records = _read_records(path)
        chunks.append(records)
        full_lines += sum(r.full and r.stream in streams for r in records)
        # Strictly more lines than asked: the first one may have begun in an older file.
        if tail is not None and full_lines > tail:
            break
        if since is not None and records and records[0].time < since:
            break
    merged = (r for records in reversed(chunks) for r in records)
    return _select(_Joiner().lines(merged), tail, since, streams)


def _select(
    lines: Iterable[LogLine], tail: int | None, since: str | None, streams: frozenset[str]
) -> list[LogLine]:
    chosen = [ln for ln in lines if ln.stream in streams and (since is None or ln.time >= since)]
    if tail is not None:
        chosen = chosen[len(chosen) - tail:] if tail else []
    return chosen


def follow(
    directory: str | os.PathLike[str],
    wait_exit: Callable[[float], bool],
    tail: int | None = None,
    since: str | None = None,
    streams: frozenset[str] = STREAMS,
    poll: float = 0.1,
) -> Iterator[LogLine]:
    """read_logs(), then each new line until `wait_exit(timeout)` says the container exited.

    The current file is held open: when the init rotates it, its rest is read before the
    new one is opened, so no line is lost or seen twice."""
    base = os.path.join(directory, LOG_FILE)
    current = _open_or_none(base)
    joiner = _Joiner()
    history = [r for path in log_files(directory)[:-1] for r in _read_records(path)]
    tailer = _Tailer(current)
    history += tailer.records()
    yield from _select(joiner.lines(history), tail, since, streams)
    while True:
        exited = wait_exit(poll)
        while True:
            records = tailer.records()
            yield from _select(joiner.lines(records), None, since, streams)
            if not tailer.reopen(base):
                break
        if exited:
            tailer.close()
            return


class _Tailer:
    """Reads whole records from the current log file, following it across rotations."""

    def __init__(self, file: int | None) -> None:
        self.fd = file
        self.pending = b""

    def records(self) -> list[_Record]:
        if self.fd is None:
            return []
        chunks = [self.pending]
        while chunk := os.read(self.fd, _READ_SIZE):
            chunks.append(chunk)
        *lines, self.pending = b"".join(chunks).split(b"\n")
        return [parse_record(raw) for raw in lines]

    def reopen(self, path: str) -> bool:
        """True if `path` is now another file than ours (rotated, or created): switched to it."""
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return False
        if self.fd is not None and os.fstat(self.fd).st_ino == inode:
            return False
        self.close()
        self.fd = _open_or_none(path)
        self.pending = b""
        return self.fd is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def parse_since(text: str, now_ns: int | None = None) -> str:
    """Docker's --since: RFC3339 (local time when it has no zone), a Unix time, or a
    duration before now (`10m`, `1h30m`, `45s`); returned as a format_time() string."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if re.fullmatch(f"(?:{_DURATION})+", text):
        total = sum(float(n) * _DURATION_NS[unit] for n, unit in re.findall(_DURATION, text))
        return format_time(now_ns - int(total))
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return format_time(int(float(text) * 10**9))
    from datetime import datetime  # only the CLI gets here

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid time {text!r}: RFC3339 (2024-01-31T12:00:00Z), "
                         "a Unix time, or a duration like 10m") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return format_time(int(moment.timestamp()) * 10**9 + moment.microsecond * 1000)
