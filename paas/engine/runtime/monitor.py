"""The monitor: one long-lived process per engine root that watches its running containers
when no CLI waits on them, records each exit, applies restart policies and `--rm`.

It holds the root's lock (monitorlock.py), so there is at most one. It waits on a pidfd per
running container and rescans the store every SCAN_INTERVAL_S for containers started by
others. When it starts it reconciles: a container recorded running in an earlier boot of
the host, or that ended while no monitor watched, is finished and started again if its
policy says so (how the platform brings back what ran before a reboot).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from paas.engine.containers import Container, ContainerStatus
from paas.engine.runtime import monitorlock, process
from paas.engine.runtime.engine import Runtime
from paas.engine.runtime.restart import RestartPolicy, next_delay
from paas.errors import ContainerError, NetworkError

SCAN_INTERVAL_S = 1.0
LOG_FILE = "monitor.log"
Log = Callable[[str], None]


@dataclass
class Monitor:
    """Call `run()`; it returns once `stop()` is called (or a signal arrives, see serve)."""

    runtime: Runtime
    log: Log
    scan_interval: float = SCAN_INTERVAL_S
    watched: dict[str, int] = field(default_factory=dict)  # id -> its init's pidfd
    pending: dict[str, float] = field(default_factory=dict)  # id -> when to restart (monotonic)
    delays: dict[str, float] = field(default_factory=dict)  # id -> the last back-off
    handled: dict[str, float | None] = field(default_factory=dict)  # id -> started_at of the run
    _wake_r: int = -1
    _wake_w: int = -1

    def __post_init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def stop(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    @property
    def wake_fd(self) -> int:
        """Write to it (e.g. signal.set_wakeup_fd) to make run() return."""
        return self._wake_w

    def run(self) -> None:
        try:
            self._scan(starting=True)
            next_scan = time.monotonic() + self.scan_interval
            while True:
                now = time.monotonic()
                if now >= next_scan:
                    self._scan(starting=False)
                    next_scan = now + self.scan_interval
                if not self._poll(min([next_scan, *self.pending.values()]) - now):
                    return
                self._restart_due()
        finally:
            for fd in self.watched.values():
                os.close(fd)
            self.watched.clear()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- events ------------------------------------------------------------------------------

    def _poll(self, timeout: float) -> bool:
        """Wait for exits until `timeout`; False once asked to stop."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_fd = {fd: cid for cid, fd in self.watched.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(max(0, int(timeout * 1000) + 1)):
            if fd == self._wake_r:
                return False
            self._unwatch(by_fd[fd])
            self._ended(by_fd[fd], starting=False)
        return True

    def _scan(self, *, starting: bool) -> None:
        ids = set(self.runtime.store.ids())
        for gone in (set(self.watched) | set(self.pending) | set(self.handled)) - ids:
            self._forget(gone)
        for container_id in sorted(ids - set(self.watched) - set(self.pending)):
            try:
                container = self.runtime.get(container_id)
            except ContainerError:
                continue  # removed meanwhile
            self._look_at(container, starting)

    def _look_at(self, container: Container, starting: bool) -> None:
        state = container.state
        if state.pid is None or state.starttime is None:
            return  # never started (or its start failed): nothing to watch or restart
        if self._earlier_boot(container):
            self._ended(container.id, starting=starting, stale=True)
            return
        if container.status is ContainerStatus.RUNNING:
            fd = process.open_pidfd(process.ProcessRef(state.pid, state.starttime))
            if fd is not None:
                self.watched[container.id] = fd
                return
        if self.handled.get(container.id, -1.0) != state.started_at:
            self._ended(container.id, starting=starting)

    def _earlier_boot(self, container: Container) -> bool:
        """Recorded in another boot of the host: its pid names some other process now."""
        boot = container.state.boot_id
        return boot is not None and boot != self.runtime.boot_id

    def _unwatch(self, container_id: str) -> None:
        fd = self.watched.pop(container_id, None)
        if fd is not None:
            os.close(fd)

    def _forget(self, container_id: str) -> None:
        self._unwatch(container_id)
        self.pending.pop(container_id, None)
        self.delays.pop(container_id, None)
        self.handled.pop(container_id, None)

    # -- policies ----------------------------------------------------------------------------

    def _ended(self, container_id: str, *, starting: bool, stale: bool = False) -> None:
        """Record the end of its run, then remove it (--rm) or schedule its restart."""
        try:
            container = self.runtime.finish(container_id, stale=stale)
        except (ContainerError, NetworkError, OSError) as exc:
            self.log(f"{container_id[:12]}: cannot record its exit: {exc}")
            self.handled[container_id] = None  # not again at every scan; a new run is new
            return
        state, spec = container.state, container.spec
        if container.status is ContainerStatus.RUNNING:  # a user started it again meanwhile
            self._look_at(container, starting=False)
            return
        self.handled[container_id] = state.started_at
        if spec.auto_remove:
            self._remove(container)
        else:
            self._apply_policy(container, starting)

    def _apply_policy(self, container: Container, starting: bool) -> None:
        """Restart it now (when the monitor starts), after the back-off, or not at all."""
        state, container_id = container.state, container.id
        policy = RestartPolicy.parse(container.spec.restart)
        if not policy.should_restart(state.exit_code, state.restart_count, state.stopped_by_user,
                                     monitor_starting=starting):
            return
        if starting:  # what ran before a reboot or while no monitor watched: back at once
            self.log(f"{container.name}: ended unwatched ({state.exit_code}); starting it ({policy})")
            self._restart(container_id, even_if_stopped=True)
            return
        ran_for = (state.finished_at or 0.0) - (state.started_at or 0.0)
        delay = next_delay(self.delays.get(container_id), ran_for)
        self.delays[container_id] = delay
        self.pending[container_id] = time.monotonic() + delay
        self.log(f"{container.name}: exited with {state.exit_code}; restart "
                 f"{state.restart_count + 1} in {delay:.3f}s ({policy})")

    def _remove(self, container: Container) -> None:
        try:
            self.runtime.remove(container.id, timeout=0)
        except (ContainerError, NetworkError, OSError) as exc:
            self.log(f"{container.name}: cannot remove it: {exc}")
            return
        self._forget(container.id)
        self.log(f"{container.name}: exited with {container.state.exit_code}; removed (--rm)")

    def _restart_due(self) -> None:
        now = time.monotonic()
        for container_id in [cid for cid, due in self.pending.items() if due <= now]:
            self._restart(container_id, even_if_stopped=False)

    def _restart(self, container_id: str, *, even_if_stopped: bool) -> None:
        self.pending.pop(container_id, None)
        try:
            count = self.runtime.get(container_id).state.restart_count + 1
            started = self.runtime.restart(container_id, count, even_if_stopped=even_if_stopped)
            container = self.runtime.get(container_id)
        except (ContainerError, NetworkError, OSError) as exc:  # that run ended too: policy decides
            self.log(f"{container_id[:12]}: restart failed: {exc}")
            self._after_failed_start(container_id)
            return
        if started:
            self._look_at(container, starting=False)

    def _after_failed_start(self, container_id: str) -> None:
        with contextlib.suppress(ContainerError):
            if self.runtime.get(container_id).state.pid is not None:
                self._ended(container_id, starting=False)


def serve(runtime: Runtime, log: Log, *, wait_for_lock: bool = False) -> bool:
    """Be this root's monitor until SIGTERM/SIGINT; False if another one already is (and
    not `wait_for_lock`)."""
    lock = monitorlock.acquire(runtime.root, wait=wait_for_lock)
    if lock is None:
        return False
    monitor = Monitor(runtime, log)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)  # the wake-up fd ends run(); no exception mid-start
    previous = signal.set_wakeup_fd(monitor.wake_fd)
    log(f"monitor of {runtime.root} started (pid {os.getpid()}, boot {runtime.boot_id})")
    try:
        monitor.run()
    finally:
        signal.set_wakeup_fd(previous)
        os.close(lock)
    log("monitor stopped")
    return True


def ensure_running(
    runtime: Runtime, argv: list[str], env: dict[str, str], log_name: str = LOG_FILE
) -> int | None:
    """Start `argv` (a command that serves this root's monitor) in a new session, its output
    to a log in the root, unless a monitor runs; the new process's pid, or None."""
    if monitorlock.is_held(runtime.root):
        return None
    runtime.root.mkdir(parents=True, exist_ok=True)
    with open(runtime.root / log_name, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, close_fds=True, env=env)
    return proc.pid
