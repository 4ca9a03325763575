"""The deploy workers: `settings.workers` rq Workers on the deploy queue, each a forked child
of one supervising process that restarts a worker that dies and stops them all on SIGTERM.

Pushes of different apps build in parallel, as many at once as there are workers; two pushes
of one app serialize on the pipeline's app lock. The deploy pipeline is imported once, here,
before the fork: each job runs in a horse rq forks from its worker, which then starts with
the pipeline loaded instead of importing it (~0.25 s) on every push.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from types import FrameType

from rq import Worker

from paas.config import Settings
from paas.jobs.queue import DEPLOY_QUEUE, connect, wait_for_redis

REDIS_WAIT_S = 30.0
PRELOAD = "paas.deploy.pipeline"
# A worker that dies this soon after its start, this many times in a row, is not restarted
# again: something is broken (Redis gone, a bad install) and the platform should say so.
QUICK_DEATH_S = 5.0
QUICK_DEATHS_LIMIT = 5
RESPAWN_PAUSE_S = 1.0
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def run_workers(settings: Settings, count: int | None = None, burst: bool = False) -> int:
    """`count` (default settings.workers) workers in child processes, until SIGTERM/SIGINT;
    with `burst`, until each finds the queue empty. The exit status: 0, or 1 when the
    workers kept dying."""
    wait_for_redis(settings, REDIS_WAIT_S).close()
    _preload()
    pool = WorkerPool(settings, count or settings.workers, burst)
    return pool.run()


def _preload() -> None:
    # A worker must start even when the pipeline cannot be imported: the job reports it.
    try:
        importlib.import_module(PRELOAD)
    except Exception:  # noqa: BLE001 (anything an import raises)
        _say(f"cannot preload {PRELOAD}; jobs will import it:\n{traceback.format_exc()}")


def _say(text: str) -> None:
    print(f"[workers {os.getpid()}] {text}", file=sys.stderr, flush=True)


@dataclass
class WorkerPool:
    """Forks the workers, reaps them, restarts those that die, forwards SIGTERM once."""

    settings: Settings
    count: int
    burst: bool = False
    children: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> slot, start
    stopping: bool = False
    quick_deaths: int = 0

    def run(self) -> int:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._stop)
        _say(f"starting {self.count} deploy worker(s)")
        for slot in range(1, self.count + 1):
            self._spawn(slot)
        code = 0
        while self.children:
            pid, status = os.wait()
            slot, started = self.children.pop(pid, (0, 0.0))
            if not slot or self.stopping or self.burst:
                continue
            if not self._should_respawn(slot, status, time.monotonic() - started):
                code = 1
                self._stop(signal.SIGTERM, None)
                continue
            time.sleep(RESPAWN_PAUSE_S)
            if not self.stopping:
                self._spawn(slot)
        _say("all deploy workers stopped")
        return code

    def _should_respawn(self, slot: int, status: int, lived_s: float) -> bool:
        self.quick_deaths = self.quick_deaths + 1 if lived_s < QUICK_DEATH_S else 0
        _say(f"worker {slot} exited ({_describe(status)}) after {lived_s:.1f}s")
        if self.quick_deaths >= QUICK_DEATHS_LIMIT:
            _say(f"workers died {self.quick_deaths} times in a row right after starting; giving up")
            return False
        return True

    def _spawn(self, slot: int) -> None:
        parent = os.getpid()
        # Held until the child has its own handlers and group: a stop signal landing in
        # between would run this pool's handler in the child.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            os._exit(_child(self.settings, slot, self.burst, parent))
        self.children[pid] = (slot, time.monotonic())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a held stop reaches it too
        _say(f"worker {slot} started with pid {pid}")

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM each worker once: rq's warm shutdown lets a running deploy finish (a
        second signal would kill it, which is why the workers have process groups of their
        own and the platform's group-wide signal reaches only this process)."""
        if self.stopping:
            return
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _child(settings: Settings, slot: int, burst: bool, parent: int) -> int:
    """The body of a forked worker; returns its exit status (never returns to the caller's
    stack: _spawn calls os._exit with it)."""
    try:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        os.setpgid(0, 0)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        _die_with_parent(parent)
        name = f"deploy-{slot}.{os.getpid()}"
        Worker([DEPLOY_QUEUE], connection=connect(settings), name=name).work(
            burst=burst, logging_level="INFO")
        return 0
    except BaseException:  # noqa: BLE001 (the child must exit here, whatever happened)
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _die_with_parent(parent: int) -> None:
    """The kernel kills this worker if the pool process dies (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.waitstatus_to_exitcode(status)}"
