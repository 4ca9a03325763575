"""LaunchSpec: everything the launcher process needs, sent by the engine as JSON on a pipe.

It is the contract between the engine (runtime.engine) and the launcher (runtime.launch):
paths are already resolved and the IP already allocated, so the launcher decides nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# Files the container's init writes into its state dir (it cannot update state.json).
EXIT_CODE_FILE = "exit_code"
ERROR_FILE = "error"
# The container's output, in the state dir; rotated to LOG_FILE.1, .2, ... (see runtime.logs).
LOG_FILE = "container.log"
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_FILES = 3


@dataclass(frozen=True, slots=True)
class Bind:
    """A host path mounted into the container (a container spec holds these as they are)."""

    src: str
    dst: str
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class NetConfig:
    """eth0 of a bridge container; `peer` is the veth end the engine moves into the netns."""

    peer: str
    ip: str
    netmask: str
    gateway: str


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    state_dir: str
    rootfs: str
    lowerdirs: tuple[str, ...]
    upperdir: str
    overlay_workdir: str
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    hostname: str
    network: str
    net: NetConfig | None
    binds: tuple[Bind, ...]
    report_fd: int
    go_fd: int
    # 0: stdout is a pipe the engine reads (Runtime.run); else the init writes LOG_FILE in
    # state_dir itself and rotates it past this size, keeping `log_files` files.
    log_max_bytes: int = 0
    log_files: int = DEFAULT_LOG_FILES

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> LaunchSpec:
        data = json.loads(raw)
        net = data.pop("net")
        return cls(
            **{
                **data,
                "lowerdirs": tuple(data["lowerdirs"]),
                "argv": tuple(data["argv"]),
                "env": tuple(data["env"]),
                "binds": tuple(Bind(**b) for b in data["binds"]),
                "net": None if net is None else NetConfig(**net),
            }
        )
