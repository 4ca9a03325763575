"""The local scheduler: a release's processes as containers of our engine, found by labels."""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from paas.core.models import Release
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import ImageConfig
from paas.engine.runtime.logs import read_logs
from paas.errors import ContainerError, DeployError

Log = Callable[[str], None]
WEB_PORT = 5000
LABEL_APP = "paas.app"
LABEL_RELEASE = "paas.release"
LABEL_PROCESS = "paas.process"
POLL_S = 0.1
LOG_TAIL_LINES = 20
# Heroku restarts crashed dynos; the engine monitor (in the Procfile) does it for us. Not
# `always`: a process an operator stopped (`paas engine stop`) stays stopped when the platform
# restarts, while crashes and host reboots bring the others back.
RESTART_POLICY = "unless-stopped"


@dataclass(frozen=True, slots=True)
class Process:
    container_id: str
    process_type: str
    ip: str | None
    port: int

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


class LocalScheduler:
    def __init__(self, engine: Engine, stop_timeout: float) -> None:
        self.engine = engine
        self.stop_timeout = stop_timeout

    @staticmethod
    def _argv(config: ImageConfig, command: str) -> tuple[str, ...]:
        entrypoint = tuple(config.entrypoint or ())
        if not command:
            argv = entrypoint + tuple(config.cmd or ())
        elif entrypoint:
            argv = entrypoint + tuple(shlex.split(command))
        else:
            argv = ("/bin/sh", "-c", command)
        if not argv:
            raise DeployError("the image has no CMD or ENTRYPOINT and the Procfile no command")
        return argv

    def start(self, release: Release, process_type: str, index: int = 1) -> Process:
        image = self.engine.images.get(release.image)
        config = image.config
        spec = ContainerSpec(
            name=f"{release.app}.{process_type}.{index}",
            lowerdirs=tuple(str(p) for p in self.engine.images.lowerdirs(image)),
            image=image.id,
            stop_signal=config.stop_signal,
            argv=self._argv(config, release.processes[process_type]),
            env=(*config.env, f"PORT={WEB_PORT}", f"DYNO={process_type}.{index}"),
            workdir=config.working_dir or "/",
            user=config.user or "root",
            hostname=f"{release.app}-{process_type}-{index}",
            network="bridge",
            labels={
                LABEL_APP: release.app,
                LABEL_RELEASE: str(release.version),
                LABEL_PROCESS: process_type,
            },
            restart=RESTART_POLICY,
        )
        runtime = self.engine.runtime
        container = runtime.create(spec)
        try:
            started = runtime.start(container.id)
        except ContainerError:
            runtime.remove(container.id)
            raise
        return Process(started.id, process_type, started.ip, WEB_PORT)

    def check(self, process: Process, wait: float, timeout: float) -> None:
        """Healthy: the port accepts connections and the process stays up `wait` seconds."""
        deadline = time.monotonic() + timeout
        listening_since: float | None = None
        while time.monotonic() < deadline:
            self._alive_or_raise(process)
            if _accepts(process.ip, process.port):
                listening_since = listening_since or time.monotonic()
                if time.monotonic() - listening_since >= wait:
                    return
            time.sleep(POLL_S)
        raise DeployError(
            f"{process.process_type} did not accept connections on port {process.port} "
            f"within {timeout:.0f}s{self._tail(process)}"
        )

    def _alive_or_raise(self, process: Process) -> None:
        container = self.engine.runtime.get(process.container_id)
        restarts = container.state.restart_count  # the monitor may have restarted it already
        if container.status != "running" or restarts:
            status = f"{restarts} time(s), restarted" if restarts else f"with status {container.exit_code}"
            raise DeployError(
                f"{process.process_type} exited {status} before it was healthy{self._tail(process)}"
            )

    def _tail(self, process: Process) -> str:
        try:
            directory = self.engine.runtime.store.dir(process.container_id)
            lines = [line.text for line in read_logs(directory, tail=LOG_TAIL_LINES)]
        except OSError:
            return ""
        return ("; its last output:\n" + "\n".join(lines)) if lines else ""

    def app_containers(self, app: str) -> list[str]:
        return [c.id for c in self.engine.runtime.list({LABEL_APP: app})]

    def retire(self, container_ids: list[str]) -> None:
        for container_id in container_ids:
            self.engine.runtime.stop(container_id, timeout=self.stop_timeout)
            self.engine.runtime.remove(container_id)


def _accepts(ip: str | None, port: int) -> bool:
    if not ip:
        return False
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False
