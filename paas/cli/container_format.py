"""How `paas engine` prints containers: Docker's ps rows, statuses, stats rows and inspect JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paas.cli.engine_format import Row, time_ago
from paas.core.units import binary_size
from paas.engine.containers import Container, ContainerStatus
from paas.engine.runtime.cgroups import OOM_KILLED, Stats

SHORT_ID = 12
COMMAND_WIDTH = 20
NANO = 1_000_000_000
EXIT_KILLED = 137  # 128 + SIGKILL: how an exit nobody recorded is shown, as the runtime does
ZERO_TIME = "0001-01-01T00:00:00Z"  # Docker's "never" in inspect
PS_HEADERS: Row = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
STATS_HEADERS: Row = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")


@dataclass(frozen=True, slots=True)
class Shown:
    """A container with what the CLI adds to it: its image's name and when it was created."""

    container: Container
    image: str
    created: float


def iso(stamp: float | None) -> str:
    if stamp is None:
        return ZERO_TIME
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat().replace("+00:00", "Z")


def oom_killed(container: Container) -> bool:
    return (container.state.error or "").startswith(OOM_KILLED)


def status_text(container: Container, now: float | None = None) -> str:
    """`Up 3 seconds`, `Exited (0) 5 seconds ago` or `Created`, as `docker ps` writes them."""
    state = container.state
    if container.status is ContainerStatus.RUNNING and state.started_at is not None:
        up = "Up " + time_ago(iso(state.started_at), now).removesuffix(" ago")
        return f"{up} (restarts: {state.restart_count})" if state.restart_count else up
    if container.status is ContainerStatus.EXITED:
        code = EXIT_KILLED if state.exit_code is None else state.exit_code
        when = state.finished_at or state.started_at
        return f"Exited ({code}) {time_ago(iso(when), now)}" if when else f"Exited ({code})"
    return "Created"


def _command(argv: tuple[str, ...], no_trunc: bool) -> str:
    text = " ".join(argv)
    if not no_trunc and len(text) > COMMAND_WIDTH:
        text = text[: COMMAND_WIDTH - 1] + "…"
    return f'"{text}"'


def ps_row(shown: Shown, no_trunc: bool = False, now: float | None = None) -> Row:
    container = shown.container
    ports = ", ".join(str(p) for p in container.spec.ports)
    return (
        container.id if no_trunc else container.id[:SHORT_ID],
        shown.image,
        _command(container.spec.argv, no_trunc),
        time_ago(iso(shown.created), now),
        status_text(container, now),
        ports,
        container.name,
    )



def cpu_percent(cpu_ns: int, wall_ns: int) -> float:
    """CPU time used over the wall time it was used in, where 100% is one core (Docker's scale).

    A counter that went back (the group was made anew) or no time passed yields 0.
    """
    if wall_ns <= 0 or cpu_ns <= 0:
        return 0.0
    return 100 * cpu_ns / wall_ns


def stats_row(container: Container, stats: Stats | None, cpu: float, host_memory: int) -> Row:
    """One line of `stats`; no memory limit shows the host's memory, as Docker does, and a
    container that is not running (no stats) shows zeros, as `docker stats -a` does."""
    if stats is None:
        return (container.id[:SHORT_ID], container.name, "0.00%", "0B / 0B", "0.00%", "0")
    limit = stats.memory_limit or host_memory
    return (
        container.id[:SHORT_ID],
        container.name,
        f"{cpu:.2f}%",
        f"{binary_size(stats.memory_bytes)} / {binary_size(limit)}",
        f"{100 * stats.memory_bytes / limit:.2f}%" if limit else "0.00%",
        str(stats.pids),
    )


def inspect_container(shown: Shown, log_path: str) -> dict[str, Any]:
    """What `docker container inspect` shows of a container (the fields we have)."""
    container = shown.container
    spec, state = container.spec, container.state
    running = container.status is ContainerStatus.RUNNING
    return {
        "Id": container.id,
        "Created": iso(shown.created),
        "Path": spec.argv[0],
        "Args": list(spec.argv[1:]),
        "State": {
            "Status": container.status.value,
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": oom_killed(container),
            "Dead": False,
            "Pid": container.pid or 0,
            "ExitCode": state.exit_code or 0,
            "Error": state.error or "",
            "StartedAt": iso(state.started_at),
            "FinishedAt": iso(state.finished_at),
        },
        "RestartCount": state.restart_count,
        "Image": spec.image,
        "Name": f"/{container.name}",
        "LogPath": log_path,
        "Config": {
            "Hostname": spec.hostname or container.id[:SHORT_ID],
            "User": spec.user,
            "Env": list(spec.env),
            "Cmd": list(spec.argv),
            "Image": shown.image,
            "WorkingDir": spec.workdir,
            "Labels": dict(spec.labels),
        },
        "NetworkSettings": {
            "IPAddress": (state.ip or "") if spec.network == "bridge" else "",
            "Ports": _port_bindings(container) if running else {},
        },
        "HostConfig": {
            "Memory": spec.memory_bytes or 0,
            "NanoCpus": round((spec.cpus or 0) * NANO),
            "PidsLimit": spec.pids_limit,
            "NetworkMode": spec.network,
            "PortBindings": _port_bindings(container),
        },
    }


def _port_bindings(container: Container) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in container.spec.ports:
        host = {"HostIp": port.host_ip, "HostPort": str(port.host_port)}
        bindings.setdefault(f"{port.container_port}/{port.proto}", []).append(host)
    return bindings
