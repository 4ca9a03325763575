"""Container records: what to run (spec) and what happened (state), persisted as JSON.

Each container owns a directory `<root>/containers/<id>/` holding `spec.json`, `state.json`,
its log, and the overlay dirs (`upper`, `work`, `rootfs`, `init`). This module knows no
processes: whether a recorded pid is still alive is the runtime's business.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, cast

from paas.engine.runtime.launchspec import (
    DEFAULT_LOG_FILES,
    DEFAULT_LOG_MAX_BYTES,
    ERROR_FILE,
    EXIT_CODE_FILE,
    Bind,
)
from paas.engine.runtime.restart import RestartPolicy
from paas.errors import ContainerError

NetworkMode = Literal["bridge", "none", "host"]
NETWORK_MODES: tuple[str, ...] = ("bridge", "none", "host")
PortProto = Literal["tcp", "udp"]
PORT_PROTOS: tuple[str, ...] = ("tcp", "udp")
ANY_HOST_IP = "0.0.0.0"
LOG_FILE = "container.log"
# Not a container (ids never start with a dot): see ContainerStore.scratch.
SCRATCH_DIR = ".init"
TRASH_PREFIX = ".trash-"  # a removed container's dir while a thread deletes it


class ContainerStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A published port (`-p`): connections to host_ip:host_port reach container_port."""

    host_port: int
    container_port: int
    proto: PortProto = "tcp"
    host_ip: str = ANY_HOST_IP

    def __post_init__(self) -> None:
        for port in (self.host_port, self.container_port):
            if type(port) is not int or not 1 <= port <= 65535:
                raise ContainerError(f"invalid port {port!r}: ports go from 1 to 65535")
        if self.proto not in PORT_PROTOS:
            raise ContainerError(f"invalid protocol {self.proto!r}: tcp or udp")
        try:
            ipaddress.IPv4Address(self.host_ip)
        except ValueError:
            raise ContainerError(f"invalid host address {self.host_ip!r}") from None

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Docker's `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`."""
        ports, _, proto = text.partition("/")
        parts = ports.split(":")
        if len(parts) not in (2, 3):
            raise ContainerError(f"invalid port mapping {text!r}: [HOST_IP:]HOST_PORT:PORT[/PROTO]")
        try:
            host_port, container_port = int(parts[-2]), int(parts[-1])
        except ValueError:
            raise ContainerError(f"invalid port mapping {text!r}: ports are numbers") from None
        host_ip = parts[0] if len(parts) == 3 else ANY_HOST_IP
        return cls(host_port, container_port, cast(PortProto, proto or "tcp"), host_ip)

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What to run. `lowerdirs` are image snapshot dirs, top-most first (overlayfs order)."""

    name: str
    lowerdirs: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    image: str = ""  # the id of the image the lowerdirs come from, "" if none (keeps it from gc)
    stop_signal: str = ""  # the image's STOPSIGNAL (a name or number); "" means SIGTERM
    workdir: str = "/"
    user: str = "root"
    hostname: str = ""
    network: NetworkMode = "bridge"
    binds: tuple[Bind, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    ports: tuple[PortMapping, ...] = ()
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES  # the log rotates past this size...
    log_files: int = DEFAULT_LOG_FILES  # ...keeping this many files
    restart: str = "no"  # the restart policy, as `--restart` takes it (see runtime.restart)
    auto_remove: bool = False  # `-d --rm`: the monitor removes it when it exits
    tty: bool = False  # `-t`: the app's stdio is a pty of the container (the shim logs it)
    interactive: bool = False  # `-i`: the app's stdin stays open for an attached client

    def __post_init__(self) -> None:
        policy = RestartPolicy.parse(self.restart)
        if self.auto_remove and policy.needs_monitor:
            raise ContainerError(f"container {self.name!r}: a restart policy and auto-remove conflict")
        if not self.argv:
            raise ContainerError(f"container {self.name!r}: argv must not be empty")
        if not self.lowerdirs:
            raise ContainerError(f"container {self.name!r}: needs at least one lower dir")
        if self.network not in NETWORK_MODES:
            raise ContainerError(f"container {self.name!r}: unknown network {self.network!r}")
        if self.ports and self.network != "bridge":
            raise ContainerError(f"container {self.name!r}: ports are published on bridge networks only")
        for bind in self.binds:
            if not os.path.isabs(bind.dst) or ".." in Path(bind.dst).parts:
                raise ContainerError(f"bind target must be an absolute path: {bind.dst!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerSpec:
        return cls(
            **{
                **data,
                "lowerdirs": tuple(data["lowerdirs"]),
                "argv": tuple(data["argv"]),
                "env": tuple(data["env"]),
                "binds": tuple(Bind(**b) for b in data["binds"]),
                "ports": tuple(PortMapping(**p) for p in data.get("ports", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What happened to the last start. (pid, starttime) identify the init process."""

    pid: int | None = None
    starttime: int | None = None
    ip: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    restart_count: int = 0  # restarts by the monitor since the last start by a user
    stopped_by_user: bool = False  # a stop/kill through the engine: no restart (see restart.py)
    boot_id: str | None = None  # the host boot of the last start: a later boot means it died


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    spec: ContainerSpec
    state: ContainerState
    status: ContainerStatus

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.state.pid if self.status is ContainerStatus.RUNNING else None

    @property
    def ip(self) -> str | None:
        return self.state.ip

    @property
    def exit_code(self) -> int | None:
        return self.state.exit_code

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.labels


def _read(path: str) -> bytes | None:
    """The file's bytes; None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _remove_tree(path: str) -> None:
    try:  # most of it are files and empty dirs: rmtree would open and stat each
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _remove_dir(entry.path)
                else:
                    os.unlink(entry.path)
        os.rmdir(path)
    except OSError:  # anything unusual (a race, a permission): rmtree sorts it out
        shutil.rmtree(path, ignore_errors=True)


def _remove_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        shutil.rmtree(path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` atomically: a reader sees the old or the new file."""
    _write_text(path, json.dumps(data, indent=1))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ContainerStore:
    """Container directories under `<root>/containers`."""

    def __init__(self, root: Path) -> None:
        self.base = root / "containers"
        self._base = str(self.base)

    def dir(self, container_id: str) -> Path:
        return Path(self._dir(container_id))

    def _dir(self, container_id: str) -> str:
        """dir() as a str: the records are read several times a start, pathlib is slow."""
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise ContainerError(f"invalid container id {container_id!r}")
        return f"{self._base}/{container_id}"

    def add(self, spec: ContainerSpec) -> str:
        container_id = uuid.uuid4().hex
        path = self._dir(container_id)
        try:
            os.mkdir(path)
        except FileNotFoundError:  # the first container of this root
            os.makedirs(path)
        for sub in ("upper", "work"):
            os.mkdir(f"{path}/{sub}")
        write_json(Path(path) / "spec.json", spec.to_json())
        return container_id  # no state.json yet: load reads that as a fresh ContainerState()

    def scratch(self) -> Path:
        """Where each container's init mounts a tmpfs of its own (the init layer and the
        root's mount point, see runtime.rootfs): in its own mount namespace, so this one
        empty dir serves them all and a container's dir holds no mount point."""
        path = self.base / SCRATCH_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ids(self) -> list[str]:
        if not self.base.is_dir():
            return []
        return sorted(p.name for p in self.base.iterdir()
                      if not p.name.startswith(".") and (p / "spec.json").is_file())

    def load(self, container_id: str) -> tuple[ContainerSpec, ContainerState]:
        path = self._dir(container_id)
        raw_spec = _read(f"{path}/spec.json")
        if raw_spec is None:
            raise ContainerError(f"no such container: {container_id}")
        raw_state = _read(f"{path}/state.json")
        try:
            spec = ContainerSpec.from_json(json.loads(raw_spec))
            # no state.json: never started
            state = ContainerState() if raw_state is None else ContainerState(**json.loads(raw_state))
        except (ValueError, TypeError, KeyError) as exc:
            raise ContainerError(f"container {container_id}: corrupt record: {exc}") from None
        return spec, self._with_result_files(path, state)

    def save_state(self, container_id: str, state: ContainerState) -> None:
        path = f"{self._dir(container_id)}/state.json"
        text = json.dumps(asdict(state), indent=1)
        if _read(path) == text.encode():  # saved again unchanged (a stop after a wait)
            return
        _write_text(Path(path), text)

    def clear_result_files(self, container_id: str) -> None:
        for name in (EXIT_CODE_FILE, ERROR_FILE):
            (self.dir(container_id) / name).unlink(missing_ok=True)

    def delete(self, container_id: str) -> None:
        """Gone at once for every reader (a rename); its files go in a thread, which the
        interpreter waits for at exit (a crash leaves a `.trash-` dir: no container)."""
        path = self._dir(container_id)
        trash = f"{self._base}/{TRASH_PREFIX}{container_id}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        except OSError:  # a trash dir of a crash in the way
            _remove_tree(path)
            return
        threading.Thread(target=_remove_tree, args=(trash,), name="paas-delete").start()

    @staticmethod
    def _with_result_files(path: str, state: ContainerState) -> ContainerState:
        """Fold in what the container's init wrote itself (it cannot touch state.json)."""
        if state.exit_code is None:
            code = _read(f"{path}/{EXIT_CODE_FILE}")
            with contextlib.suppress(ValueError):
                state = state if code is None else replace(state, exit_code=int(code))
        if state.error is None:
            error = _read(f"{path}/{ERROR_FILE}")
            if error is not None:
                state = replace(state, error=error.decode(errors="replace").strip() or None)
        return state
