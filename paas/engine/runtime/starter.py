"""Starter: one start of a container, from its record to a running app (or a recorded failure).

It owns the order of a start: the address and the cgroup first, then the launcher (a fork of
this process, spawn.py), and while the launcher and the init do their share, ours: publish the
ports, put the veth in place, say "go", record the state, wait for the init's "ok". Whatever
fails is freed again and written into the container's state, so a failed start leaves a
record that tells why and holds nothing.
"""

from __future__ import annotations

import signal as signals
import time
from dataclasses import replace
from typing import NoReturn

from paas.engine.containers import ContainerSpec, ContainerState, ContainerStatus, ContainerStore
from paas.engine.network import Network, veth_names
from paas.engine.runtime import process
from paas.engine.runtime.cgroups import Cgroups, Limits
from paas.engine.runtime.initlayer import etc_files
from paas.engine.runtime.launchspec import LaunchSpec, NetConfig
from paas.engine.runtime.shim import shim_path
from paas.engine.runtime.spawn import Launch
from paas.errors import ContainerError, NetworkError

LAUNCH_TIMEOUT = 30.0
KILL_WAIT = 5.0


class Starter:
    def __init__(
        self, store: ContainerStore, network: Network, cgroups: Cgroups, nameservers: tuple[str, ...]
    ) -> None:
        self.store = store
        self.network = network
        self.cgroups = cgroups
        self.nameservers = nameservers

    def launch(
        self, container_id: str, output_fd: int, *, to_log: bool, fresh: ContainerSpec | None = None,
        attach: bool = False, restarts: int = 0, boot_id: str | None = None,
    ) -> process.ProcessRef:
        """Start it (its init's ref); the init writes the log itself when `to_log`, else to
        `output_fd`. `fresh`: the spec of a container just created, which holds nothing to
        check or free. `restarts` and `boot_id` go into the state, a failed start's too: then
        on-failure:N never retries a bad command forever."""
        spec = fresh
        if spec is None:
            spec, state = self.store.load(container_id)
            if container_status(state) is ContainerStatus.RUNNING:
                raise ContainerError(f"container {container_id} is already running")
            self.release(container_id, spec)
            self.store.clear_result_files(container_id)
        record = ContainerState(restart_count=restarts, boot_id=boot_id)
        try:
            ip = self._prepare(container_id, spec)
            launch_spec = self.launch_spec(container_id, spec, ip)
            if to_log:
                launch_spec = replace(launch_spec, log_max_bytes=spec.log_max_bytes,
                                      log_files=spec.log_files,
                                      attach_fd=1 if attach else -1)  # output_fd: its stdout
            # The launcher joins the cgroups itself. On v1 it writes "0" to `tasks`: moving
            # its one thread skips the global lock (an RCU grace period) cgroup.procs takes.
            join = "cgroup.procs" if self.cgroups.unified else "tasks"
            joins = [path / join for path in self.cgroups.paths(container_id)]
            launch = Launch(launch_spec, output_fd, joins)
        except (ContainerError, NetworkError, OSError) as exc:
            self._fail(container_id, None, str(exc), record)
        try:
            return self._handshake(container_id, launch, spec, replace(record, ip=ip))
        finally:
            launch.close()

    def launch_spec(self, container_id: str, spec: ContainerSpec, ip: str | None) -> LaunchSpec:
        path = self.store.dir(container_id)
        hostname = spec.hostname or container_id[:12]
        net = None
        if ip is not None:
            net = NetConfig(veth_names(container_id)[1], ip, self.network.netmask,
                            self.network.gateway)
        scratch = self.store.scratch()
        return LaunchSpec(
            state_dir=str(path),
            # both in the init's own tmpfs on `scratch` (see rootfs.mount_root)
            rootfs=str(scratch / "root"),
            lowerdirs=(str(scratch / "layer"), *spec.lowerdirs),
            upperdir=str(path / "upper"),
            overlay_workdir=str(path / "work"),
            argv=spec.argv,
            env=spec.env,
            workdir=spec.workdir,
            user=spec.user,
            hostname=hostname,
            network=spec.network,
            net=net,
            binds=spec.binds,
            report_fd=-1,
            go_fd=-1,
            shim=str(shim_path()),
            cgroupns=self.cgroups.unified,
            etc_files=etc_files(hostname, ip, self.nameservers, spec.network),
            tty=spec.tty,
            interactive=spec.interactive,
        )

    def release(self, container_id: str, spec: ContainerSpec) -> None:
        """Free what a run held: its cgroup, published ports and address."""
        self.cgroups.remove(container_id)
        if spec.network == "bridge":
            if spec.ports:  # before the address goes back: no rule may point at a new owner
                self.network.unpublish(container_id)
            # No detach: the init is gone or going, and the kernel deletes the veth pair
            # with its network namespace, in the background (waiting costs 20-40 ms).
            self.network.release(container_id)

    def _prepare(self, container_id: str, spec: ContainerSpec) -> str | None:
        """What the launcher needs: the address (bridge networking) and the cgroup."""
        ip = None
        if spec.network == "bridge":
            self.network.ensure_bridge()
            ip = self.network.allocate(container_id)
        self.cgroups.create(container_id, Limits(spec.memory_bytes, spec.cpus, spec.pids_limit))
        return ip

    def _handshake(
        self, container_id: str, launch: Launch, spec: ContainerSpec, record: ContainerState
    ) -> process.ProcessRef:
        """Our side of a start, done while the launcher and then the init run theirs."""
        ref = None
        try:
            if record.ip is not None:  # meanwhile, the launcher starts the init
                self.network.publish(container_id, record.ip, spec.ports)
            pid = launch.read_pid(LAUNCH_TIMEOUT)
            starttime = process.read_starttime(pid)
            if starttime is None:
                raise ContainerError("the container's init vanished before it started")
            ref = process.ProcessRef(pid, starttime)
            started_at = time.time()
            if record.ip is not None:
                self.network.attach(container_id, pid, record.ip)
            launch.go()
            self.store.save_state(container_id, replace(
                record, pid=pid, starttime=starttime, started_at=started_at))
            launch.wait_ready(LAUNCH_TIMEOUT)
            return ref
        except (ContainerError, NetworkError, OSError) as exc:
            launch.close()  # the init, if any, reads EOF for "go" and exits: the cgroup empties
            if ref is not None:
                process.terminate(ref, signals.SIGKILL, KILL_WAIT, KILL_WAIT)
            self._fail(container_id, ref, str(exc), record)
        except BaseException:  # ^C: an init that got "go" must not outlive an unrecorded start
            if ref is not None:
                process.terminate(ref, signals.SIGKILL, KILL_WAIT, KILL_WAIT)
            raise

    def _fail(
        self, container_id: str, ref: process.ProcessRef | None, message: str, record: ContainerState
    ) -> NoReturn:
        spec, state = self.store.load(container_id)
        self.release(container_id, spec)
        pid, starttime = (ref.pid, ref.starttime) if ref else (None, None)
        state = replace(
            state, pid=pid, starttime=starttime, error=state.error or message, finished_at=time.time(),
            restart_count=record.restart_count, boot_id=record.boot_id,
        )
        self.store.save_state(container_id, state)
        raise ContainerError(f"{spec.name}: {state.error}")


def container_status(state: ContainerState) -> ContainerStatus:
    """What a recorded state means now: its init's liveness is read from (pid, starttime)."""
    if state.pid is None or state.starttime is None:
        return ContainerStatus.EXITED if state.error else ContainerStatus.CREATED
    if process.is_alive(process.ProcessRef(state.pid, state.starttime)):
        return ContainerStatus.RUNNING
    return ContainerStatus.EXITED
