"""Runtime: create, start, run, stop, list and remove containers of one engine root.

Containers are processes we never own: each start (starter.py) goes through a launcher, a
fork of this process (spawn.py) that exits at once, so the container's init is reparented
away from us.
Liveness is therefore read from (pid, starttime) and waits use pidfds, which also works
from a process other than the one that started the container.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal as signals
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from paas.engine.containers import (
    Container,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerStore,
)
from paas.engine.network import Network
from paas.engine.runtime import logs, monitorlock, process, restart
from paas.engine.runtime.cgroups import CGROUP_BASE, Cgroups, Stats, oom_error
from paas.engine.runtime.initlayer import host_nameservers
from paas.engine.runtime.launchspec import EXIT_CODE_FILE
from paas.engine.runtime.starter import KILL_WAIT, Starter, container_status
from paas.errors import ContainerError

if TYPE_CHECKING:
    import socket

    from paas.engine.runtime.exec import Attach

DEFAULT_STOP_TIMEOUT = 10.0
EXIT_KILLED = 128 + signals.SIGKILL
STREAM_PIPE_SIZE = 1 << 18
HOST_RESTARTED = "the host restarted since it last ran"


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: int
    upper_dir: Path
    container_id: str


class Runtime:
    def __init__(
        self,
        root: Path,
        network: Network,
        *,
        nameservers: tuple[str, ...] | None = None,
        cgroup_base: Path = CGROUP_BASE,
        boot_id: str | None = None,
    ) -> None:
        self.root = root
        self._boot_id = boot_id  # injectable: a test plays a reboot by handing a new one
        self.network = network
        self.store = ContainerStore(root)
        self.cgroups = Cgroups(root, cgroup_base)
        self.nameservers = host_nameservers() if nameservers is None else nameservers
        self.starter = Starter(self.store, network, self.cgroups, self.nameservers)

    # -- records -------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Container:
        return self.get(self.store.add(spec))

    def get(self, container_id: str) -> Container:
        spec, state = self.store.load(container_id)
        return Container(container_id, spec, state, container_status(state))

    def list(self, labels: dict[str, str] | None = None) -> list[Container]:
        wanted = (labels or {}).items()
        found = []
        for container_id in self.store.ids():
            try:
                container = self.get(container_id)
            except ContainerError:
                continue  # removed meanwhile by another process
            if wanted <= container.labels.items():
                found.append(container)
        return found

    def logs_path(self, container_id: str) -> Path:
        return self.store.dir(container_id) / "container.log"

    def stats(self, container_id: str) -> Stats:
        """Memory, CPU time and pids of a running container, read from its cgroup."""
        if self.get(container_id).status is not ContainerStatus.RUNNING:
            raise ContainerError(f"container {container_id} is not running")
        return self.cgroups.stats(container_id)

    # -- processes -----------------------------------------------------------------------

    def exec(
        self, container_id: str, argv: Sequence[str], *, env: Sequence[str] = (),
        user: str | None = None, workdir: str | None = None, tty: bool = False,
        stdin: int = 0, stdout: int = 1, stderr: int = 2,
        winsize: tuple[int, int] | None = None, attach: Attach | None = None,
    ) -> int:
        """Run `argv` in the running container, in its namespaces and cgroup; its exit code.

        With `tty`, the process gets a pty of the container; `attach(master_fd, exit_fd)` copies
        to and from it until `exit_fd` (a pidfd) turns readable.
        """
        from paas.engine.runtime.exec import exec_spec, run_exec  # only exec needs it: `run` starts faster

        spec = exec_spec(
            self.get(container_id), self.cgroups.paths(container_id), argv, env=env, user=user,
            workdir=workdir, tty=tty, winsize=winsize,
        )
        return run_exec(spec, (stdin, stdout, stderr), attach)

    @property
    def boot_id(self) -> str:
        if self._boot_id is None:
            self._boot_id = restart.boot_id()
        return self._boot_id

    def start(self, container_id: str) -> Container:
        """Start it as a user does: the restart count and a user's stop are forgotten."""
        with restart.container_lock(self.store.dir(container_id)):
            return self._start(container_id, 0)

    def restart(self, container_id: str, restarts: int, *, even_if_stopped: bool = False) -> bool:
        """The monitor's restart: False when, meanwhile, it was removed, started again or
        stopped by a user (`even_if_stopped`: `always` when the monitor starts)."""
        with restart.container_lock(self.store.dir(container_id)) as exists:
            if not exists:
                return False
            container = self.get(container_id)
            stopped = container.state.stopped_by_user and not even_if_stopped
            if stopped or container.status is ContainerStatus.RUNNING:
                return False
            self._start(container_id, restarts)
            return True

    def _start(self, container_id: str, restarts: int) -> Container:
        with open(self.logs_path(container_id), "ab") as log:  # the launcher's own errors
            self.starter.launch(container_id, log.fileno(), to_log=True, restarts=restarts,
                                boot_id=self.boot_id)
        return self.get(container_id)

    def attach_start(self, container_id: str, winsize: tuple[int, int] | None = None) -> socket.socket:
        """Start it as `start` does, attached (`run -i`/`-t`); the client's socket. It takes the
        app's input (shutdown(SHUT_WR): EOF on stdin). From it come, with a tty, first one byte
        with a dup of the pty master (SCM_RIGHTS: TIOCSWINSZ on it resizes), then the output
        (also logged) in Docker's frames, [1 stdout | 2 stderr, 0, 0, 0, uint32 BE size] data;
        EOF once the app exited and its output is out. Closing it detaches: the app runs on."""
        import socket  # only attached runs need it
        import struct

        ours, theirs = socket.socketpair()
        try:
            if self.store.load(container_id)[0].tty:  # the init reads it before the app starts
                ours.sendall(struct.pack("HHHH", *(winsize or (0, 0)), 0, 0))
            with restart.container_lock(self.store.dir(container_id)):
                # the launcher's stdout: the init moves it off and opens the log there
                self.starter.launch(container_id, theirs.fileno(), to_log=True, attach=True,
                                    boot_id=self.boot_id)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def run(
        self, spec: ContainerSpec, on_output: Callable[[str], None], timeout: float | None = None
    ) -> RunResult:
        """Run to completion, streaming output lines. The caller removes the container."""
        container_id = self.store.add(spec)
        with process.mounts_held() as hold:
            return self._run(container_id, spec, on_output, timeout, hold)

    def _run(
        self, container_id: str, spec: ContainerSpec, on_output: Callable[[str], None],
        timeout: float | None, hold: Callable[[process.ProcessRef], None],
    ) -> RunResult:
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a chatty step then costs us fewer wake-ups
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, STREAM_PIPE_SIZE)
        try:
            try:
                ref = self.starter.launch(container_id, write_fd, to_log=False, fresh=spec,
                                          boot_id=self.boot_id)
            finally:
                os.close(write_fd)
            hold(ref)
            finished = self._stream(read_fd, container_id, spec, on_output, timeout)
        except ContainerError:  # the start failed: pass on what the container said first
            self._stream(read_fd, container_id, spec, on_output, KILL_WAIT)
            raise
        except BaseException:  # on_output raised, or ^C: do not leave the step running
            self.stop(container_id, timeout=0)
            raise
        finally:
            os.close(read_fd)
        if not finished:
            self.stop(container_id, timeout=0)
            raise ContainerError(f"{spec.name}: did not finish within {timeout}s")
        process.wait_exit(ref, None)  # what wait() does, without reading the record first
        container = self.finish(container_id)
        return RunResult(_exit_code(container), self.store.dir(container_id) / "upper", container_id)

    def wait(self, container_id: str, timeout: float | None = None) -> Container:
        """Wait for the container to exit, then release its resources."""
        state = self.get(container_id).state
        if (
            state.pid is not None
            and state.starttime is not None
            and not process.wait_exit(process.ProcessRef(state.pid, state.starttime), timeout)
        ):
            return self.get(container_id)
        return self.finish(container_id)

    def finish(self, container_id: str, *, stale: bool = False) -> Container:
        """Record the end of an exited container and free what it held (exit code, OOM,
        cgroup, veth, address, NAT). A no-op if, meanwhile, it was started again.

        `stale`: recorded in an earlier boot of the host, its pid names another process now,
        if any: the pid is forgotten, so nothing ever signals or waits for that process."""
        with restart.container_lock(self.store.dir(container_id)) as exists:
            if not exists:
                raise ContainerError(f"no such container: {container_id}")
            if not stale:
                current = self.get(container_id)
                if current.status is ContainerStatus.RUNNING:
                    return current
            container = self._finish(container_id)
            if stale and container.state.pid is not None:
                error = container.state.error or HOST_RESTARTED
                state = replace(container.state, pid=None, starttime=None, error=error)
                self.store.save_state(container_id, state)
                return self.get(container_id)
            return container  # what get() would read back: the lock keeps starts out

    def kill(self, container_id: str, signum: int) -> bool:
        """A user's signal: the container counts as stopped by the user (no restart).
        False when it is not running."""
        state = self._stopped_by_user(container_id)
        if state.pid is None or state.starttime is None:
            return False
        return process.send_signal(process.ProcessRef(state.pid, state.starttime), signum)

    def _stopped_by_user(self, container_id: str) -> ContainerState:
        """Mark it before any signal, under its lock, so the monitor never restarts it."""
        with restart.container_lock(self.store.dir(container_id)) as exists:
            if not exists:
                raise ContainerError(f"no such container: {container_id}")
            _, state = self.store.load(container_id)
            if not state.stopped_by_user:
                state = replace(state, stopped_by_user=True)
                self.store.save_state(container_id, state)
            return state

    def stop(
        self,
        container_id: str,
        timeout: float = DEFAULT_STOP_TIMEOUT,
        signal: int | None = None,
    ) -> Container:
        """Send `signal` (default: the spec's stop signal, else SIGTERM), SIGKILL after `timeout`,
        then free the cgroup, veth and address."""
        spec, _ = self.store.load(container_id)
        state = self._stopped_by_user(container_id)
        if state.pid is not None and state.starttime is not None:
            ref = process.ProcessRef(state.pid, state.starttime)
            process.terminate(ref, _stop_signal(spec) if signal is None else signal,
                              timeout, KILL_WAIT)
        return self.finish(container_id)

    def remove(self, container_id: str, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        with restart.container_lock(self.store.dir(container_id)) as exists:
            if exists:  # one that exited needs no stop: free what it may still hold, delete it
                spec, state = self.store.load(container_id)
                if container_status(state) is not ContainerStatus.RUNNING:
                    if state.finished_at is None:  # else _finish or a failed start freed it all
                        self.starter.release(container_id, spec)
                    self.store.delete(container_id)
                    return
        self.stop(container_id, timeout)
        with restart.container_lock(self.store.dir(container_id)):
            self.store.delete(container_id)

    def cleanup_all(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop this root's engine server and monitor, then remove every container, its
        cgroups and its network."""
        monitorlock.stop(self.root, timeout, KILL_WAIT, name=monitorlock.SERVER_LOCK_FILE)
        monitorlock.stop(self.root, timeout, KILL_WAIT)
        for container_id in self.store.ids():
            self.remove(container_id, timeout)
        self.cgroups.teardown()
        self.network.teardown()

    # -- internals -----------------------------------------------------------------------

    def _finish(self, container_id: str) -> Container:
        """Record how an exited container ended and free what it held."""
        spec, state = self.store.load(container_id)
        oom_kills = self.cgroups.oom_kills(container_id)  # before the release: the count dies with the group
        self.starter.release(container_id, spec)
        if state.pid is not None:
            state = replace(
                state,
                exit_code=EXIT_KILLED if state.exit_code is None else state.exit_code,
                finished_at=state.finished_at or _exit_time(self.store.dir(container_id)),
            )
            if oom_kills:
                state = replace(state, exit_code=EXIT_KILLED, error=oom_error(spec.memory_bytes))
            self.store.save_state(container_id, state)
        return Container(container_id, spec, state, container_status(state))  # what get() would read back

    def _stream(
        self, fd: int, container_id: str, spec: ContainerSpec, on_output: Callable[[str], None],
        timeout: float | None,
    ) -> bool:
        """Copy the init's log records to the log, their text to `on_output` line by line;
        False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        dir_fd = os.open(self.store.dir(container_id), os.O_RDONLY | os.O_DIRECTORY)
        reader = logs.PipeReader(logs.LogWriter.open(dir_fd, spec.log_max_bytes, spec.log_files))
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not select.select([fd], [], [], left)[0]:
                    return False
                chunk = os.read(fd, STREAM_PIPE_SIZE)
                for line in reader.feed(chunk) if chunk else reader.finish():
                    on_output(line)
                if not chunk:
                    return True
        finally:
            reader.writer.close()
            os.close(dir_fd)


def _exit_time(state_dir: Path) -> float:
    """When the init recorded the exit (it may have exited long before anyone looked), else now."""
    try:
        return (state_dir / EXIT_CODE_FILE).stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _exit_code(container: Container) -> int:
    return EXIT_KILLED if container.exit_code is None else container.exit_code


def _stop_signal(spec: ContainerSpec) -> int:
    try:
        return process.signal_number(spec.stop_signal) if spec.stop_signal else signals.SIGTERM
    except ValueError:  # one Python cannot name (SIGRTMIN+3): stop it anyway
        return signals.SIGTERM
