"""ps and ps:* commands: an app's processes (Dokku's ps plugin, Heroku's dynos).

`ps APP` reads what runs from the engine (scheduler.inspect); `ps:scale`, `ps:restart`,
`ps:stop` and `ps:start` change it through the deploy's operations, under the app's lock.
"""

from __future__ import annotations

import time

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.core.models import ROUTED_TYPE
from paas.core.names import validate_process_type
from paas.deploy.context import open_engine  # the process's one Engine, shared with operations
from paas.errors import UsageError
from paas.scheduler.inspect import AppProcess, app_processes, by_type

ONEOFF_HEADING = "run"


def formation(ctx: Context, app: str) -> dict[str, int]:
    """Process type -> count: the current release's types, with the stored counts (what
    ps:scale set) on top; types a newer Procfile dropped are left out. Before the first
    deploy, the stored counts alone."""
    release = ctx.store.current_release(app)
    stored = ctx.store.get_formation(app)
    if release is None:
        counts = stored
    else:
        counts = {t: stored.get(t, release.formation.get(t, 0)) for t in release.processes}
    return dict(sorted(counts.items(), key=lambda item: (item[0] != ROUTED_TYPE, item[0])))


def _process_lines(processes: list[AppProcess], wanted: dict[str, int], now: float) -> list[str]:
    """`--- web: 2 running` then `web.1: up 2m (v7) 10.0.0.2:5000` per container."""
    lines = []
    groups = by_type(p for p in processes if not p.oneoff)
    for process_type, count in wanted.items():
        if count and process_type not in groups:
            groups[process_type] = []
    for process_type, group in groups.items():
        running = sum(p.running for p in group)
        of = f" of {wanted[process_type]}" if wanted.get(process_type, running) != running else ""
        lines.append(f"--- {process_type}: {running}{of} running")
        lines += [_line(p, now) for p in group]
    oneoffs = [p for p in processes if p.oneoff]
    if oneoffs:
        lines.append(f"--- {ONEOFF_HEADING}: {len(oneoffs)} one-off")
        lines += [_line(p, now) for p in oneoffs]
    return lines


def _line(process: AppProcess, now: float) -> str:
    return f"{process.dyno}: {process.state(now)} (v{process.release}) {process.address}".rstrip()


@click.command("ps")
@click.argument("app")
@format_option
@pass_ctx
def ps(ctx: Context, app: str, fmt: str) -> None:
    """Show an app's processes: ps APP [--format json]."""
    require_app(ctx, app)
    processes = app_processes(open_engine(ctx.settings), app, stats=fmt == "json")
    wanted = formation(ctx, app)
    release = ctx.store.current_release(app)
    now = time.time()
    data = {
        "app": app, "release": release.version if release else None, "formation": wanted,
        "processes": [p.to_json(now) for p in processes],
    }

    def text() -> None:
        click.echo(f"=====> {app} processes" + (f" (v{release.version})" if release else ""))
        lines = _process_lines(processes, wanted, now)
        for line in lines or ["no processes: push the app, or ps:scale it"]:
            click.echo(line)

    emit(fmt, data, text)


def parse_counts(pairs: tuple[str, ...]) -> dict[str, int]:
    """TYPE=N words -> {TYPE: N}."""
    counts: dict[str, int] = {}
    for pair in pairs:
        process_type, sep, count = pair.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"expected TYPE=COUNT (a whole number), got {pair!r}")
        counts[validate_process_type(process_type)] = int(count)
    return counts


@click.command("ps:scale")
@click.argument("app")
@click.argument("pairs", nargs=-1)
@format_option
@pass_ctx
def ps_scale(ctx: Context, app: str, pairs: tuple[str, ...], fmt: str) -> None:
    """Set process counts, or show them: ps:scale APP [TYPE=N...]."""
    require_app(ctx, app)
    if not pairs:
        _show_formation(app, formation(ctx, app), fmt)
        return
    counts = parse_counts(pairs)
    from paas.deploy import operations  # only changes need the deploy's imports

    click.echo(f"-----> Scaling {app} processes: "
               + " ".join(f"{t}={n}" for t, n in counts.items()))
    operations.scale(ctx.settings, app, counts, user=ctx.user or "", log=click.echo)


def _show_formation(app: str, counts: dict[str, int], fmt: str) -> None:
    """Dokku's table of `ps:scale APP` without arguments."""
    def text() -> None:
        click.echo(f"-----> Scaling for {app}")
        width = max([len(t) + 1 for t in counts] + [len("proctype:")])
        click.echo(f"{'proctype:':<{width}} qty")
        click.echo(f"{'-' * (width - 1) + ':':<{width}} ---")
        for process_type, count in counts.items():
            click.echo(f"{process_type + ':':<{width}} {count}")

    emit(fmt, counts, text)


def _lifecycle(name: str, verb: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("app")
    @pass_ctx
    def command(ctx: Context, app: str) -> None:
        require_app(ctx, app)
        from paas.deploy import operations

        getattr(operations, verb)(ctx.settings, app, log=click.echo)

    return command


ps_restart = _lifecycle("ps:restart", "restart",
                        "Restart an app's processes (new containers, checked before traffic moves).")
ps_stop = _lifecycle("ps:stop", "stop", "Stop an app's processes (the router answers 503).")
ps_start = _lifecycle("ps:start", "start", "Start an app's processes again after ps:stop.")

COMMANDS = [ps, ps_scale, ps_restart, ps_stop, ps_start]
