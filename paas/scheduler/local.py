"""The local scheduler: a release's processes as containers of our engine, found by labels.

`process_spec` says how one process of a release runs (argv, env, limits, labels); the
LocalScheduler starts such containers, checks them, lists an app's containers and retires them.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from paas.core.models import Release
from paas.engine.containers import Container, ContainerSpec, ContainerStatus
from paas.engine.engine import Engine
from paas.engine.imageconfig import ImageConfig
from paas.engine.runtime.logs import read_logs
from paas.errors import ContainerError, DeployError

Log = Callable[[str], None]
WEB_PORT = 5000
LABEL_APP = "paas.app"
LABEL_RELEASE = "paas.release"
LABEL_PROCESS = "paas.process"
LABEL_INDEX = "paas.index"
# One-off containers (`run`): deploys, restarts and ps:stop leave them alone; destroy removes them.
LABEL_ONEOFF = "paas.oneoff"
# Set by the buildpack builder on its release images: ENTRYPOINT is a launcher that sources
# .profile.d and runs its ONE argument with /bin/sh -c (Heroku's runtime contract).
LABEL_LAUNCHER = "paas.launcher"
POLL_S = 0.05
LOG_TAIL_LINES = 20
HOSTNAME_MAX = 63
RETIRE_THREADS = 8
# Heroku restarts crashed dynos; the engine monitor (in the Procfile) does it for us. Not
# `always`: a process an operator stopped (`paas engine stop`) stays stopped when the platform
# restarts, while crashes and host reboots bring the others back.
RESTART_POLICY = "unless-stopped"


@dataclass(frozen=True, slots=True)
class Process:
    container_id: str
    process_type: str
    index: int
    ip: str | None
    port: int = WEB_PORT

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def dyno(self) -> str:
        return f"{self.process_type}.{self.index}"


def command_argv(config: ImageConfig, command: str) -> tuple[str, ...]:
    """How a Procfile command runs in an image (Docker's ENTRYPOINT/CMD table, plus the
    buildpack launcher that takes the whole command as one argument)."""
    entrypoint = tuple(config.entrypoint or ())
    if not command:
        argv = entrypoint + tuple(config.cmd or ())
    elif config.labels.get(LABEL_LAUNCHER) == "1" and entrypoint:
        argv = (*entrypoint, command)
    elif entrypoint:
        argv = entrypoint + tuple(shlex.split(command))
    else:
        argv = ("/bin/sh", "-c", command)
    if not argv:
        raise DeployError("the image has no CMD or ENTRYPOINT and the Procfile no command")
    return argv


def process_env(
    config: ImageConfig, app_config: Mapping[str, str], process_type: str, index: int,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Image env, then the app's config, then what the platform sets (PORT, DYNO), then
    `extra` (a one-off's `-e`)."""
    env = config.env_dict()
    env.update(app_config)
    env.update({"PORT": str(WEB_PORT), "DYNO": f"{process_type}.{index}"})
    env.update(extra or {})
    return tuple(f"{key}={value}" for key, value in env.items())


def process_spec(
    engine: Engine, release: Release, process_type: str, index: int, *, name: str,
    command: str | None = None, tty: bool = False, interactive: bool = False,
    config: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The container of `process_type`.`index` of `release`. With `command` (a one-off run),
    that command instead of the Procfile's, and no restart policy. `config`: the app's config
    to run with instead of the release's (a one-off sees the newest); `extra_env` on top."""
    if command is None and process_type not in release.processes:
        raise DeployError(f"release v{release.version} of {release.app} has no process type "
                          f"{process_type!r}")
    image = engine.images.get(release.image)
    image_config = image.config
    limits = release.limits_of(process_type)
    return ContainerSpec(
        name=name,
        lowerdirs=tuple(str(p) for p in engine.images.lowerdirs(image)),
        image=image.id,
        stop_signal=image_config.stop_signal,
        argv=command_argv(image_config, release.processes[process_type] if command is None else command),
        env=process_env(image_config, release.config if config is None else config, process_type, index,
                        extra_env),
        workdir=image_config.working_dir or "/",
        user=image_config.user or "root",
        hostname=f"{release.app}-{process_type}-{index}"[:HOSTNAME_MAX].rstrip("-"),
        network="bridge",
        labels={
            LABEL_APP: release.app,
            LABEL_RELEASE: str(release.version),
            LABEL_PROCESS: process_type,
            LABEL_INDEX: str(index),
            **({} if command is None else {LABEL_ONEOFF: "1"}),
        },
        memory_bytes=limits.memory_bytes,
        cpus=limits.cpus,
        restart=RESTART_POLICY if command is None else "no",
        tty=tty,
        interactive=interactive,
    )


class LocalScheduler:
    def __init__(self, engine: Engine, stop_timeout: float, logs_dir: Path | None = None) -> None:
        """`logs_dir`: where retired containers' logs are kept (see logarchive); None: not."""
        self.engine = engine
        self.stop_timeout = stop_timeout
        self.logs_dir = logs_dir

    def start(self, release: Release, process_type: str, index: int = 1, name: str = "") -> Process:
        spec = process_spec(self.engine, release, process_type, index,
                            name=name or f"{release.app}.{process_type}.{index}")
        runtime = self.engine.runtime
        container = runtime.create(spec)
        try:
            started = runtime.start(container.id)
        except ContainerError:
            runtime.remove(container.id)
            raise
        return Process(started.id, process_type, index, started.ip)

    def check(self, process: Process, wait: float, timeout: float) -> None:
        """Healthy: the port accepts connections and the process stays up `wait` seconds."""
        self.check_all([process], [process], wait, timeout)

    def check_all(
        self, processes: Sequence[Process], listening: Sequence[Process], wait: float,
        timeout: float,
    ) -> None:
        """Healthy: up `wait` seconds since now (they were just started) without exiting, and,
        for those in `listening`, accepting connections on their port by then. Raises
        DeployError naming the first that fails."""
        started = time.monotonic()
        deadline = started + max(timeout, wait)
        pending = list(processes)
        while pending:
            for process in list(pending):
                self._alive_or_raise(process)
                if time.monotonic() - started < wait:
                    continue
                if process not in listening or _accepts(process.ip, process.port):
                    pending.remove(process)
            if not pending:
                return
            if time.monotonic() > deadline:
                self._timed_out(pending[0], listening, timeout)
            time.sleep(POLL_S)

    def _timed_out(self, process: Process, listening: Sequence[Process], timeout: float) -> None:
        what = (f"did not accept connections on port {process.port}" if process in listening
                else "did not stay up")
        raise DeployError(f"{process.dyno} {what} within {timeout:g}s{self._tail(process)}")

    def _alive_or_raise(self, process: Process) -> None:
        container = self.engine.runtime.get(process.container_id)
        restarts = container.state.restart_count  # the monitor may have restarted it already
        if container.status != "running" or restarts:
            status = f"{restarts} time(s), restarted" if restarts else f"with status {container.exit_code}"
            error = f" ({container.state.error})" if container.state.error else ""
            raise DeployError(
                f"{process.dyno} exited {status}{error} before it was healthy{self._tail(process)}"
            )

    def _tail(self, process: Process) -> str:
        try:
            directory = self.engine.runtime.store.dir(process.container_id)
            lines = [line.text for line in read_logs(directory, tail=LOG_TAIL_LINES)]
        except (OSError, ContainerError):
            return ""
        return ("; its last output:\n" + "\n".join(lines)) if lines else ""

    def containers(self, app: str, *, oneoff: bool = False) -> list[Container]:
        """The app's formation containers (with `oneoff`, its one-off `run` containers too)."""
        found = self.engine.runtime.list({LABEL_APP: app})
        return [c for c in found if oneoff or c.labels.get(LABEL_ONEOFF) != "1"]

    def app_containers(self, app: str) -> list[str]:
        return [c.id for c in self.containers(app)]

    def running(self, app: str) -> list[Process]:
        """The app's running containers, as processes (web ones carry their address)."""
        found = []
        for c in self.containers(app):
            if c.status is ContainerStatus.RUNNING:
                index = int(c.labels.get(LABEL_INDEX, "1") or 1)
                found.append(Process(c.id, c.labels.get(LABEL_PROCESS, ""), index, c.ip))
        return sorted(found, key=lambda p: (p.process_type, p.index))

    def retire(self, container_ids: Sequence[str]) -> None:
        """Stop and remove, keeping each one's log in the app's log archive. In parallel:
        each may take the whole stop timeout when its app ignores SIGTERM."""
        if len(container_ids) < 2:
            for container_id in container_ids:
                self._retire_one(container_id)
            return
        with ThreadPoolExecutor(min(len(container_ids), RETIRE_THREADS)) as pool:
            list(pool.map(self._retire_one, container_ids))

    def _retire_one(self, container_id: str) -> None:
        try:
            self.engine.runtime.stop(container_id, timeout=self.stop_timeout)
            self._keep_log(container_id)
            self.engine.runtime.remove(container_id)
        except ContainerError:
            pass  # removed meanwhile (another retire, or by hand): nothing left to do

    def _keep_log(self, container_id: str) -> None:
        if self.logs_dir is not None:
            from paas.scheduler import logarchive  # it imports this module

            logarchive.keep(self.engine, container_id, self.logs_dir)


def _accepts(ip: str | None, port: int) -> bool:
    if not ip:
        return False
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False
