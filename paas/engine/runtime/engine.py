"""Runtime: create, start, run, stop, list and remove containers of one engine root.

Containers are processes we never own: each start goes through a launcher subprocess
(see spawn.py) that exits at once, so the container's init is reparented away from us.
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
from typing import NoReturn

from paas.engine.containers import (
    Container,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerStore,
)
from paas.engine.network import Network, veth_names
from paas.engine.runtime import logs, process
from paas.engine.runtime.cgroups import CGROUP_BASE, Cgroups, Limits, Stats, oom_error
from paas.engine.runtime.exec import Attach, exec_spec, run_exec
from paas.engine.runtime.initlayer import etc_files, host_nameservers, write_init_layer
from paas.engine.runtime.launchspec import EXIT_CODE_FILE, LaunchSpec, NetConfig
from paas.engine.runtime.spawn import Launch
from paas.errors import ContainerError, NetworkError

DEFAULT_STOP_TIMEOUT = 10.0
LAUNCH_TIMEOUT = 30.0
KILL_WAIT = 5.0
EXIT_KILLED = 128 + signals.SIGKILL
STREAM_PIPE_SIZE = 1 << 18


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
    ) -> None:
        self.root = root
        self.network = network
        self.store = ContainerStore(root)
        self.cgroups = Cgroups(root, cgroup_base)
        self.nameservers = host_nameservers() if nameservers is None else nameservers

    # -- records -------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> Container:
        return self.get(self.store.add(spec))

    def get(self, container_id: str) -> Container:
        spec, state = self.store.load(container_id)
        return Container(container_id, spec, state, _status(state))

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
        spec = exec_spec(
            self.get(container_id), self.cgroups.paths(container_id), argv, env=env, user=user,
            workdir=workdir, tty=tty, winsize=winsize,
        )
        return run_exec(spec, (stdin, stdout, stderr), attach)

    def start(self, container_id: str) -> Container:
        with open(self.logs_path(container_id), "ab") as log:  # for the launcher's own errors
            self._launch(container_id, log.fileno(), to_log=True)
        return self.get(container_id)

    def run(
        self, spec: ContainerSpec, on_output: Callable[[str], None], timeout: float | None = None
    ) -> RunResult:
        """Run to completion, streaming output lines. The caller removes the container."""
        container_id = self.create(spec).id
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a chatty step then costs us fewer wake-ups
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, STREAM_PIPE_SIZE)
        try:
            try:
                self._launch(container_id, write_fd, to_log=False)
            finally:
                os.close(write_fd)
            finished = self._stream(read_fd, container_id, on_output, timeout)
        except ContainerError:  # the start failed: pass on what the container said first
            self._stream(read_fd, container_id, on_output, KILL_WAIT)
            raise
        except BaseException:  # on_output raised, or ^C: do not leave the step running
            self.stop(container_id, timeout=0)
            raise
        finally:
            os.close(read_fd)
        if not finished:
            self.stop(container_id, timeout=0)
            raise ContainerError(f"{spec.name}: did not finish within {timeout}s")
        container = self.wait(container_id)
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
        return self._finish(container_id)

    def stop(
        self,
        container_id: str,
        timeout: float = DEFAULT_STOP_TIMEOUT,
        signal: int | None = None,
    ) -> Container:
        """Send `signal` (default: the spec's stop signal, else SIGTERM), SIGKILL after `timeout`,
        then free the cgroup, veth and address."""
        container = self.get(container_id)
        state = container.state
        if state.pid is not None and state.starttime is not None:
            ref = process.ProcessRef(state.pid, state.starttime)
            process.terminate(ref, _stop_signal(container.spec) if signal is None else signal,
                              timeout, KILL_WAIT)
        return self._finish(container_id)

    def remove(self, container_id: str, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        self.stop(container_id, timeout)
        self.store.delete(container_id)

    def cleanup_all(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop and remove every container of this root, its cgroups and its network."""
        for container_id in self.store.ids():
            self.remove(container_id, timeout)
        self.cgroups.teardown()
        self.network.teardown()

    # -- internals -----------------------------------------------------------------------

    def _launch(self, container_id: str, output_fd: int, *, to_log: bool) -> None:
        """Start it; the init writes the log itself when `to_log`, else to `output_fd`."""
        container = self.get(container_id)
        if container.status is ContainerStatus.RUNNING:
            raise ContainerError(f"container {container_id} is already running")
        self._release(container_id, container.spec)
        self.store.clear_result_files(container_id)
        spec = container.spec
        try:
            ip = self._prepare(container_id, spec)
            launch_spec = self._launch_spec(container_id, spec, ip)
            if to_log:
                launch_spec = replace(launch_spec, log_max_bytes=spec.log_max_bytes,
                                      log_files=spec.log_files)
            launch = Launch(launch_spec, output_fd)
        except (ContainerError, NetworkError, OSError) as exc:
            self._fail(container_id, None, str(exc))
        try:
            self._handshake(container_id, launch, ip)
        finally:
            launch.close()

    def _prepare(self, container_id: str, spec: ContainerSpec) -> str | None:
        """The address (bridge networking), the cgroup and the init layer of a start."""
        ip = None
        if spec.network == "bridge":
            self.network.ensure_bridge()
            ip = self.network.allocate(container_id)
            self.network.publish(container_id, ip, spec.ports)
        self.cgroups.create(container_id, Limits(spec.memory_bytes, spec.cpus, spec.pids_limit))
        hostname = spec.hostname or container_id[:12]
        files = etc_files(hostname, ip, self.nameservers, spec.network)
        write_init_layer(self.store.dir(container_id) / "init", files, spec.binds)
        return ip

    def _handshake(self, container_id: str, launch: Launch, ip: str | None) -> None:
        ref = None
        try:
            pid = launch.read_pid(LAUNCH_TIMEOUT)
            starttime = process.read_starttime(pid)
            if starttime is None:
                raise ContainerError("the container's init vanished before it started")
            ref = process.ProcessRef(pid, starttime)
            state = ContainerState(pid, starttime, ip, started_at=time.time())
            self.store.save_state(container_id, state)
            self.cgroups.add(container_id, pid)
            if ip is not None:
                self.network.attach(container_id, pid, ip)
            launch.go()
            launch.wait_ready(LAUNCH_TIMEOUT)
        except (ContainerError, NetworkError, OSError) as exc:
            if ref is not None:
                process.terminate(ref, signals.SIGKILL, KILL_WAIT, KILL_WAIT)
            self._fail(container_id, ref, str(exc))

    def _fail(self, container_id: str, ref: process.ProcessRef | None, message: str) -> NoReturn:
        spec, state = self.store.load(container_id)
        self._release(container_id, spec)
        pid, starttime = (ref.pid, ref.starttime) if ref else (None, None)
        state = replace(
            state, pid=pid, starttime=starttime, error=state.error or message,
            exit_code=state.exit_code, finished_at=time.time(),
        )
        self.store.save_state(container_id, state)
        raise ContainerError(f"{spec.name}: {state.error}")

    def _launch_spec(self, container_id: str, spec: ContainerSpec, ip: str | None) -> LaunchSpec:
        path = self.store.dir(container_id)
        net = None
        if ip is not None:
            net = NetConfig(veth_names(container_id)[1], ip, self.network.netmask,
                            self.network.gateway)
        return LaunchSpec(
            state_dir=str(path),
            rootfs=str(path / "rootfs"),
            lowerdirs=(str(path / "init"), *spec.lowerdirs),
            upperdir=str(path / "upper"),
            overlay_workdir=str(path / "work"),
            argv=spec.argv,
            env=spec.env,
            workdir=spec.workdir,
            user=spec.user,
            hostname=spec.hostname or container_id[:12],
            network=spec.network,
            net=net,
            binds=spec.binds,
            report_fd=-1,
            go_fd=-1,
        )

    def _finish(self, container_id: str) -> Container:
        """Record how an exited container ended and free what it held."""
        spec, state = self.store.load(container_id)
        oom_kills = self.cgroups.oom_kills(container_id)  # before _release: the count dies with the group
        self._release(container_id, spec)
        if state.pid is not None:
            state = replace(
                state,
                exit_code=EXIT_KILLED if state.exit_code is None else state.exit_code,
                finished_at=state.finished_at or _exit_time(self.store.dir(container_id)),
            )
            if oom_kills:
                state = replace(state, exit_code=EXIT_KILLED, error=oom_error(spec.memory_bytes))
            self.store.save_state(container_id, state)
        return self.get(container_id)

    def _release(self, container_id: str, spec: ContainerSpec) -> None:
        self.cgroups.remove(container_id)
        if spec.network == "bridge":
            if spec.ports:  # before the address goes back: no rule may point at a new owner
                self.network.unpublish(container_id)
            self.network.detach(container_id)
            self.network.release(container_id)

    def _stream(
        self, fd: int, container_id: str, on_output: Callable[[str], None], timeout: float | None
    ) -> bool:
        """Copy the init's log records to the log, their text to `on_output` line by line;
        False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        spec = self.get(container_id).spec
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

def _status(state: ContainerState) -> ContainerStatus:
    if state.pid is None or state.starttime is None:
        return ContainerStatus.EXITED if state.error else ContainerStatus.CREATED
    if process.is_alive(process.ProcessRef(state.pid, state.starttime)):
        return ContainerStatus.RUNNING
    return ContainerStatus.EXITED


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
