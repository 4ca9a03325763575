"""An app's log: the lines of all its containers merged by time, each tagged with its
process (`app[web.1]`), Heroku's and Dokku's way.

`read_app_logs` gives the last N lines (`logs APP -n N -p TYPE`); `follow_app_logs` goes on
with the new ones (`logs -t`), from the containers that run now and from those that appear
later (a deploy, a scale, a `run`), until its `stop` callback says the reader went away.
Each container's file is followed by the engine's own `follow` (rotation-safe) in a thread.
With an `archive` (scheduler.logarchive), the lines of retired containers come first too.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

from paas.engine.engine import Engine
from paas.engine.runtime.logs import LogLine, follow, read_logs
from paas.errors import ContainerError
from paas.scheduler.inspect import AppProcess, app_processes
from paas.scheduler.logarchive import kept_logs

DEFAULT_LINES = 100  # Dokku's default for `logs`
POLL_S = 0.2
RESCAN_S = 0.5  # how often follow looks for new containers of the app
APP_SOURCE = "app"


@dataclass(frozen=True, slots=True)
class AppLogLine:
    time: str  # RFC3339 UTC with ns (the engine's format): compare as strings
    process: str  # the dyno: web.1
    stream: str
    text: str

    def format(self, quiet: bool = False) -> str:
        """`2026-11-23T10:00:00.123Z app[web.1]: text`; `quiet`: the text alone."""
        if quiet:
            return self.text
        return f"{self.time[:23]}Z {APP_SOURCE}[{self.process}]: {self.text}"

    def to_json(self) -> dict[str, str]:
        return {"time": self.time, "process": self.process, "stream": self.stream, "text": self.text}


def _tagged(process: AppProcess, line: LogLine) -> AppLogLine:
    return AppLogLine(line.time, process.dyno, line.stream, line.text)


def _processes(engine: Engine, app: str, process_type: str | None) -> list[AppProcess]:
    found = app_processes(engine, app)
    return [p for p in found if process_type is None or p.process_type == process_type]


def read_app_logs(engine: Engine, app: str, *, tail: int | None = DEFAULT_LINES,
                  process_type: str | None = None, archive: Path | None = None) -> list[AppLogLine]:
    """The app's last `tail` lines (None: all), oldest first, across its containers (and
    the retired ones kept in `archive`)."""
    processes = _processes(engine, app, process_type)
    per_container = [_read(engine, p, tail) for p in processes]
    per_container += _kept(archive, processes, process_type, tail)
    return _merged_tail(per_container, tail)


def _kept(archive: Path | None, live: list[AppProcess], process_type: str | None,
          tail: int | None) -> list[list[AppLogLine]]:
    """The lines of retired containers (not of one still there: it is read live)."""
    if archive is None:
        return []
    running = {p.container_id for p in live}
    found = []
    for kept in kept_logs(archive):
        if kept.container_id in running or process_type not in (None, kept.process_type):
            continue
        try:
            lines = read_logs(kept.directory, tail=tail)
        except OSError:  # pruned meanwhile
            continue
        found.append([AppLogLine(ln.time, kept.dyno, ln.stream, ln.text) for ln in lines])
    return found


def _read_since(engine: Engine, process: AppProcess, since: str) -> list[LogLine]:
    try:
        return read_logs(engine.runtime.store.dir(process.container_id), since=since)
    except (OSError, ContainerError):
        return []


def _merged_tail(per_container: list[list[AppLogLine]], tail: int | None) -> list[AppLogLine]:
    merged = list(heapq.merge(*per_container, key=lambda line: line.time))
    return merged if tail is None else merged[max(0, len(merged) - tail):] if tail else []


def _read(engine: Engine, process: AppProcess, tail: int | None) -> list[AppLogLine]:
    try:
        lines = read_logs(engine.runtime.store.dir(process.container_id), tail=tail)
    except (OSError, ContainerError):  # removed meanwhile
        return []
    return [_tagged(process, line) for line in lines]


def follow_app_logs(
    engine: Engine, app: str, *, tail: int | None = DEFAULT_LINES,
    process_type: str | None = None, archive: Path | None = None,
    stop: Callable[[], bool] = lambda: False, poll: float = POLL_S, rescan: float = RESCAN_S,
) -> Generator[AppLogLine, None, None]:
    """read_app_logs(), then each new line as it is written, also of containers started
    later, until `stop()` is true (checked every `poll` seconds) or the caller closes us.

    The followers start here, not at the first next(): `-n 0 -t` follows from the moment it
    was asked, and a line written before the caller starts reading is not lost."""
    follower = _AppFollower(engine, app, process_type, poll)
    try:
        history = follower.start(tail, archive)
    except BaseException:
        follower.close()
        raise
    return _follow(follower, history, stop, rescan)


def _follow(
    follower: _AppFollower, history: list[AppLogLine], stop: Callable[[], bool], rescan: float
) -> Generator[AppLogLine, None, None]:
    try:
        yield from history
        last_scan = time.monotonic()
        while not stop():
            yield from follower.next_batch()
            if time.monotonic() - last_scan >= rescan:
                follower.scan()
                last_scan = time.monotonic()
    finally:
        follower.close()


@dataclass(frozen=True, slots=True)
class _Seen:
    """Where a follower starts: after `count` lines of time `time` (read already)."""

    time: str
    count: int


class _AppFollower:
    """One thread per followed container puts its new lines on a queue; batches come out
    sorted by time."""

    def __init__(self, engine: Engine, app: str, process_type: str | None, poll: float) -> None:
        self.engine = engine
        self.app = app
        self.process_type = process_type
        self.poll = poll
        self.lines: queue.Queue[AppLogLine] = queue.Queue()
        self.done = threading.Event()
        self.threads: dict[str, threading.Thread] = {}

    def start(self, tail: int | None, archive: Path | None) -> list[AppLogLine]:
        """The history; each container is followed from after its last line read here."""
        processes = _processes(self.engine, self.app, self.process_type)
        # At least the last line of each: where its follower starts.
        history = [_read(self.engine, p, None if tail is None else max(tail, 1)) for p in processes]
        for process, lines in zip(processes, history, strict=True):
            self._follow(process, self._seen(process, lines[-1].time) if lines else None)
        return _merged_tail(history + _kept(archive, processes, self.process_type, tail), tail)

    def _seen(self, process: AppProcess, last: str) -> _Seen:
        """How many lines of the time of the last one read there are: the init stamps a
        whole chunk of output with one time, and the tail may have cut into it."""
        same = [ln for ln in _read_since(self.engine, process, last) if ln.time == last]
        return _Seen(last, len(same))

    def scan(self) -> None:
        """Follow the containers that appeared since (whole: they are new)."""
        for process in _processes(self.engine, self.app, self.process_type):
            if process.container_id not in self.threads:
                self._follow(process, None)

    def next_batch(self) -> list[AppLogLine]:
        try:
            batch = [self.lines.get(timeout=self.poll)]
        except queue.Empty:
            return []
        while True:
            try:
                batch.append(self.lines.get_nowait())
            except queue.Empty:
                return sorted(batch, key=lambda line: line.time)

    def _follow(self, process: AppProcess, seen: _Seen | None) -> None:
        thread = threading.Thread(target=self._run, args=(process, seen), daemon=True,
                                  name=f"paas-logs-{process.dyno}")
        self.threads[process.container_id] = thread
        thread.start()

    def _run(self, process: AppProcess, seen: _Seen | None) -> None:
        """Follow one container's log until it is removed or we are closed, from after
        what `seen` says was read already."""
        try:
            directory = self.engine.runtime.store.dir(process.container_id)
        except ContainerError:
            return
        skip = seen.count if seen else 0
        for line in follow(directory, lambda t: self._gone(process, t),
                           since=seen.time if seen else None):
            if skip and seen and line.time == seen.time:
                skip -= 1
                continue
            self.lines.put(_tagged(process, line))

    def _gone(self, process: AppProcess, timeout: float) -> bool:
        """Whether to stop following: we are closed, or the container was removed. An
        exited one is still followed: the monitor may restart it."""
        if self.done.wait(timeout):
            return True
        try:
            self.engine.runtime.get(process.container_id)
        except ContainerError:
            return True
        return False

    def close(self) -> None:
        self.done.set()
        for thread in self.threads.values():
            thread.join(timeout=2 * self.poll + 1)
