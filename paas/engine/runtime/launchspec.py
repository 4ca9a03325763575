"""LaunchSpec: everything the launcher and the init need; the launcher, a fork of the engine
(see spawn.py), gets it in its memory.

It is the contract between the engine (runtime.engine) and the launcher (runtime.launch):
paths are already resolved and the IP already allocated, so the launcher decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    shim: str  # the container init binary (runtime.shim), opened by the init before pivot_root
    # 0: stdout is a pipe the engine reads (Runtime.run); else the init writes LOG_FILE in
    # state_dir itself and rotates it past this size, keeping `log_files` files.
    log_max_bytes: int = 0
    log_files: int = DEFAULT_LOG_FILES
    # Unshare a cgroup namespace rooted at the container's group (the engine's groups are v2).
    cgroupns: bool = False
    # The init layer is lowerdirs[0], made by the init in a tmpfs (with rootfs): these files
    # under /etc (name, text), the mount points and the bind targets (see initlayer.py).
    etc_files: tuple[tuple[str, str], ...] = ()
    # `-t`: the app gets a pty slave as stdio; `-i`: a stdin pipe (without -t). attach_fd:
    # our end of Runtime.attach_start's socket (the container's input, its output in frames).
    tty: bool = False
    interactive: bool = False
    attach_fd: int = -1
