"""`paas engine run|ps|stop|kill|rm|logs|inspect`: the container verbs, with Docker's flags.

Each verb is one function; `register` adds them to the `engine` group of paas.cli.engine.
A container that exited on its own is settled (its exit recorded, its cgroup and address
freed) by the next verb that looks at it, or by the engine monitor, which `run -d` starts when
a container needs one (`--restart`, `--rm`; see engine_monitor). Foreground runs are in
engine_attach.
"""

from __future__ import annotations

import json
import signal as signals
import sys
import time
from collections.abc import Callable, Iterable

import click

from paas.cli.container_flags import (
    check_cpus,
    check_workdir,
    container_name,
    image_argv,
    merged_env,
    parse_labels,
    parse_signal,
)
from paas.cli.container_format import (
    PS_HEADERS,
    Shown,
    inspect_container,
    ps_row,
)
from paas.cli.context import Context, pass_ctx
from paas.cli.engine_attach import run_attached, run_with_session, start_failure
from paas.cli.engine_format import inspect_doc, table
from paas.cli.engine_monitor import ensure_monitor
from paas.core.units import parse_memory
from paas.engine.containers import Container, ContainerSpec, ContainerStatus, PortMapping
from paas.engine.engine import Engine
from paas.engine.runtime import Runtime
from paas.engine.runtime import logs as container_logs
from paas.engine.runtime.restart import RestartPolicy
from paas.errors import ContainerError, PaasError, UsageError

FOLLOW_POLL_S = 0.1
STOP_TIMEOUT_S = 10


# -- run ---------------------------------------------------------------------------------

def _restart_policy(text: str, detach: bool, remove: bool) -> RestartPolicy:
    try:
        policy = RestartPolicy.parse(text)
    except ContainerError as exc:
        raise UsageError(str(exc)) from None
    if policy.needs_monitor and remove:
        raise UsageError("conflicting options: --restart and --rm")
    if policy.needs_monitor and not detach:
        raise UsageError(f"--restart {policy} needs -d: restarted runs write to the log")
    return policy


def _run_detached(runtime: Runtime, spec: ContainerSpec) -> None:
    container = runtime.create(spec)
    try:
        runtime.start(container.id)
    except ContainerError as exc:
        raise start_failure(runtime, spec.name, exc) from None
    click.echo(container.id)


@click.command("run", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the id.")
@click.option("-i", "--interactive", is_flag=True, help="Keep the container's stdin open (attached: ours).")
@click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", help="Name the container (default: a random adjective_noun).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY[=VALUE]", help="Set an env var.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP] (name or number) to run as.")
@click.option("-m", "--memory", help="Memory limit (b, k, m, g), e.g. 256m.")
@click.option("--cpus", type=float, help="CPU quota in cores, e.g. 0.5.")
@click.option("--pids-limit", type=int, help="Most processes at once (0 or -1: no limit).")
@click.option("--network", type=click.Choice(["bridge", "none"]), default="bridge", show_default=True)
@click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:CONTAINER[/PROTO]",
              help="Publish a container port on the host.")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label.")
@click.option("--restart", "restart_policy", default="no", show_default=True,
              metavar="no|on-failure[:N]|always|unless-stopped",
              help="Restart policy when it exits (with -d; the engine monitor applies it).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def run(ctx: Context, detach: bool, interactive: bool, tty: bool, remove: bool,
        name: str | None, env: tuple[str, ...],
        workdir: str | None, user: str | None, memory: str | None, cpus: float | None,
        pids_limit: int | None, network: str, publish: tuple[str, ...], labels: tuple[str, ...],
        restart_policy: str, image: str, command: tuple[str, ...]) -> None:
    """Run a command in a new container (in the foreground unless -d)."""
    policy = _restart_policy(restart_policy, detach, remove)
    if interactive and tty and not detach and not sys.stdin.isatty():
        click.echo("the input device is not a TTY", err=True)  # Docker's words and exit code
        raise click.exceptions.Exit(1)
    check_workdir(workdir)
    eng = _open(ctx)
    found = eng.images.get(image)
    config = found.config
    spec = ContainerSpec(
        name=container_name(eng.runtime, name),
        lowerdirs=tuple(str(p) for p in eng.images.lowerdirs(found)),
        argv=image_argv(found, command),
        env=merged_env(config.env, env),
        image=found.id,
        stop_signal=config.stop_signal,
        workdir=workdir or config.working_dir or "/",
        user=user or config.user or "root",
        network="none" if network == "none" else "bridge",
        ports=tuple(PortMapping.parse(p) for p in publish),
        labels={**config.labels, **parse_labels(labels)},
        memory_bytes=None if memory is None else parse_memory(memory),
        cpus=None if cpus is None else check_cpus(cpus),
        pids_limit=pids_limit if pids_limit is not None and pids_limit > 0 else None,
        restart=str(policy),
        auto_remove=detach and remove,
        tty=tty,
        interactive=interactive,
    )
    if detach:
        _run_detached(eng.runtime, spec)
        if policy.needs_monitor or remove:
            ensure_monitor(ctx, eng.runtime)
        return
    if tty or interactive:
        code = run_with_session(eng.runtime, spec, remove)
    else:
        code = run_attached(eng.runtime, spec, remove)
    if code:
        raise click.exceptions.Exit(code)


# -- lookups -----------------------------------------------------------------------------

def _open(ctx: Context) -> Engine:
    from paas.cli.engine import open_engine  # that module registers these verbs: import it late

    return open_engine(ctx)


def find(runtime: Runtime, name_or_id: str) -> Container:
    from paas.engine.commit import find_container  # commit's imports are heavy; only lookups need it

    return settle(runtime, find_container(runtime, name_or_id))


def settle(runtime: Runtime, container: Container) -> Container:
    """Record the end of a container that exited unobserved, and free its cgroup and address."""
    if container.status is ContainerStatus.EXITED and container.state.finished_at is None:
        return runtime.wait(container.id, timeout=0)
    return container


def shown(eng: Engine, container: Container, names: dict[str, str] | None = None) -> Shown:
    """The container with its image's first tag (else short id) and its creation time."""
    if names is None:
        names = image_names(eng)
    image_id = container.spec.image
    image = names.get(image_id) or image_id.partition(":")[2][:12] or "<none>"
    created = (eng.runtime.store.dir(container.id) / "spec.json").stat().st_mtime
    return Shown(container, image, created)


def image_names(eng: Engine) -> dict[str, str]:
    names: dict[str, str] = {}
    for ref, image_id in eng.images.tags().items():
        names.setdefault(image_id, ref)
    return names


def each(names: Iterable[str], action: Callable[[str], None]) -> None:
    """Apply `action` to every name; report failures and exit 1 after the rest ran, like Docker."""
    failed = False
    for name in names:
        try:
            action(name)
        except PaasError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
        else:
            click.echo(name)
    if failed:
        raise click.exceptions.Exit(1)


# -- the verbs on existing containers ------------------------------------------------------

@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers, not only running.")
@click.option("-q", "--quiet", is_flag=True, help="Only show ids.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate ids and commands.")
@pass_ctx
def ps(ctx: Context, show_all: bool, quiet: bool, no_trunc: bool) -> None:
    """List containers, newest first."""
    eng = _open(ctx)
    containers = [settle(eng.runtime, c) for c in eng.runtime.list()]
    if not show_all:
        containers = [c for c in containers if c.status is ContainerStatus.RUNNING]
    names = image_names(eng)
    rows = sorted((shown(eng, c, names) for c in containers), key=lambda s: -s.created)
    if quiet:
        for item in rows:
            click.echo(item.container.id if no_trunc else item.container.id[:12])
        return
    now = time.time()
    click.echo(table(PS_HEADERS, [ps_row(item, no_trunc, now) for item in rows]))


@click.command("stop")
@click.option("-t", "--time", "timeout", type=int, default=STOP_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the stop signal to work before SIGKILL.")
@click.argument("names", nargs=-1, required=True, metavar="CONTAINER...")
@pass_ctx
def stop(ctx: Context, timeout: int, names: tuple[str, ...]) -> None:
    """Stop containers: the image's STOPSIGNAL (default SIGTERM), then SIGKILL after -t seconds."""
    eng = _open(ctx)

    def stop_one(name: str) -> None:
        container = find(eng.runtime, name)
        eng.runtime.stop(container.id, timeout=timeout)

    each(names, stop_one)


@click.command("kill")
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True,
              help="Signal to send (name or number).")
@click.argument("names", nargs=-1, required=True, metavar="CONTAINER...")
@pass_ctx
def kill(ctx: Context, signal_name: str, names: tuple[str, ...]) -> None:
    """Send a signal to containers (SIGKILL unless -s)."""
    eng = _open(ctx)
    signum = parse_signal(signal_name)

    def kill_one(name: str) -> None:
        container = find(eng.runtime, name)
        # Runtime.kill marks it stopped by the user first: its restart policy then leaves it be
        if container.status is not ContainerStatus.RUNNING or not eng.runtime.kill(container.id, signum):
            raise ContainerError(f"cannot kill container {name}: it is not running")
        if signum == signals.SIGKILL:  # it is dying: record the end and free what it held
            eng.runtime.wait(container.id, timeout=STOP_TIMEOUT_S)

    each(names, kill_one)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
@click.argument("names", nargs=-1, required=True, metavar="CONTAINER...")
@pass_ctx
def rm(ctx: Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove containers (a running one only with -f)."""
    eng = _open(ctx)

    def remove_one(name: str) -> None:
        container = find(eng.runtime, name)
        if container.status is ContainerStatus.RUNNING and not force:
            raise ContainerError(f"cannot remove container {name}: container is running: "
                                 "stop the container before removing or force remove (-f)")
        eng.runtime.remove(container.id, timeout=0)

    each(names, remove_one)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow the output until the container exits.")
@click.option("-n", "--tail", default="all", show_default=True, help="Lines from the end to show.")
@click.option("--since", help="Only lines since this time: RFC3339 (local time without a zone), "
                              "a Unix time, or a duration before now like 10m.")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time.")
@click.argument("name", metavar="CONTAINER")
@pass_ctx
def logs(ctx: Context, follow: bool, tail: str, since: str | None, timestamps: bool,
         name: str) -> None:
    """Show a container's output: its stdout lines on stdout, its stderr lines on stderr."""
    if tail != "all" and not tail.isdigit():
        raise UsageError(f"invalid --tail {tail!r}: a number or 'all'")
    after = None if since is None else container_logs.parse_since(since)
    eng = _open(ctx)
    container = find(eng.runtime, name)
    directory = eng.runtime.store.dir(container.id)
    count = None if tail == "all" else int(tail)
    if follow:
        def exited(timeout: float) -> bool:
            return eng.runtime.wait(container.id, timeout).status is not ContainerStatus.RUNNING

        lines: Iterable[container_logs.LogLine] = container_logs.follow(
            directory, exited, count, after, poll=FOLLOW_POLL_S)
    else:
        lines = container_logs.read_logs(directory, count, after)
    for line in lines:
        text = f"{line.time} {line.text}" if timestamps else line.text
        click.echo(text, err=line.stream == container_logs.STDERR)


@click.command("inspect")
@click.option("--type", "kind", type=click.Choice(["container", "image"]),
              help="Look only for this kind of object.")
@click.argument("names", nargs=-1, required=True, metavar="NAME|ID...")
@pass_ctx
def inspect(ctx: Context, kind: str | None, names: tuple[str, ...]) -> None:
    """Show containers' or images' details as JSON, like `docker inspect` (containers first)."""
    eng = _open(ctx)
    click.echo(json.dumps([_inspect_one(eng, name, kind) for name in names], indent=4))


def _inspect_one(eng: Engine, name: str, kind: str | None) -> dict[str, object]:
    if kind != "image":
        try:
            container = find(eng.runtime, name)
        except ContainerError:
            if kind == "container":
                raise
        else:
            return inspect_container(shown(eng, container), str(eng.runtime.logs_path(container.id)))
    return inspect_doc(eng.images, eng.images.get(name))


COMMANDS = [run, ps, stop, kill, rm, logs, inspect]


def register(group: click.Group) -> None:
    """Add the container verbs to `group` (this `inspect` replaces the images-only one)."""
    from paas.cli.engine_exec import exec_command  # they import this module's lookups
    from paas.cli.engine_monitor import monitor
    from paas.cli.engine_serve import serve_command
    from paas.cli.engine_stats import stats

    for command in [*COMMANDS, exec_command, stats, monitor, serve_command]:
        group.add_command(command)
