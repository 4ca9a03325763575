"""The engine's side of the launch protocol: fork the launcher and talk to it over pipes.

Report pipe (container -> engine), one line each: `pid N` from the launcher, then `ok` or
`error MESSAGE` from the container's init once the app is exec'd or setup failed.
Go pipe (engine -> container): `go` once the veth is in place; if the engine dies first,
the init reads EOF and exits instead.

The launcher is a fork of this process (runtime.launch), not a new interpreter: starting
one and importing paas cost ~50 ms a start. It exits once it has reported and done its share
of the init's setup; close() reaps it, so a long-lived engine collects no zombies.
"""

from __future__ import annotations

import _signal
import contextlib
import fcntl
import os
import select
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from paas.engine.runtime import launch
from paas.engine.runtime.launchspec import LaunchSpec
from paas.errors import ContainerError

# _signal: the C functions behind signal's, which turn every signal of a mask into an enum
# member (of all 64: a tenth of a millisecond a call, and more in a fresh fork).
ALL_SIGNALS = _signal.valid_signals()


def _pipe() -> tuple[int, int]:
    """A CLOEXEC pipe whose ends are above 2: the launcher's stdio never lands on them."""
    ends = []
    for fd in os.pipe():
        if fd <= 2:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = moved
        ends.append(fd)
    return ends[0], ends[1]


class Launch:
    """One forked launcher; the container's output goes to `output_fd` (a log file or a
    pipe). The launcher joins the cgroups by writing "0" to each of `cgroup_files` (their
    `tasks` or `cgroup.procs`). Call close() in the end, whatever happened."""

    def __init__(self, spec: LaunchSpec, output_fd: int, cgroup_files: Sequence[Path] = ()) -> None:
        launch.prepare()
        report_r, report_w = _pipe()
        go_r, go_w = _pipe()
        spec = replace(spec, report_fd=report_w, go_fd=go_r)
        joins = tuple(os.fsencode(p) for p in cgroup_files)
        # Blocked across the fork, a signal (^C) can never run one of our handlers in the
        # child; the launcher leaves them blocked and the init blocks them anyway.
        mask = _signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                launch.child(spec, output_fd, joins)
        except OSError as exc:
            for fd in (report_r, report_w, go_r, go_w):
                os.close(fd)
            raise ContainerError(f"cannot start the container launcher: {exc}") from None
        finally:
            _signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(report_w)
        os.close(go_r)
        self._pid = pid
        self._report = report_r
        self._go_w = go_w
        self._buffer = b""

    def read_pid(self, timeout: float) -> int:
        line = self._read_line(timeout)
        kind, _, value = line.partition(" ")
        if kind != "pid":
            code = self._reap(block=True)
            raise ContainerError(value or f"the container launcher exited with {code}")
        # It goes on with its share of the setup (launch._share_setup), then exits: close()
        # reaps it.
        return int(value)

    def go(self) -> None:
        os.write(self._go_w, b"go")
        os.close(self._go_w)
        self._go_w = -1

    def wait_ready(self, timeout: float) -> None:
        """Return once the app runs; raise ContainerError with the init's message otherwise."""
        line = self._read_line(timeout)
        kind, _, message = line.partition(" ")
        if kind != "ok":
            raise ContainerError(message or "the container exited during setup")

    def close(self) -> None:
        for fd in (self._report, self._go_w):
            if fd >= 0:
                os.close(fd)
        self._report = self._go_w = -1
        if not self._pid:
            return  # reaped already
        # Still running: the start failed (its share of the setup is moot then, and may be
        # what hangs), or it reported everything and is just exiting.
        if self._reap(block=False) is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._reap(block=True)

    def _reap(self, *, block: bool) -> int | None:
        """The launcher's exit code once reaped; None while it runs."""
        if not self._pid:
            return None
        try:
            pid, status = os.waitpid(self._pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # SIGCHLD ignored, or reaped by someone else
            self._pid = 0
            return -1
        if pid == 0:
            return None
        self._pid = 0
        return os.waitstatus_to_exitcode(status)

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._report], [], [], left)[0]:
                raise ContainerError(f"the container did not report within {timeout:.0f}s")
            chunk = os.read(self._report, 4096)
            if not chunk:
                return self._buffer.decode(errors="replace")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")
