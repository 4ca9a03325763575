"""resource:limit: memory and CPU limits of an app's process types (Dokku's resource plugin).

The limits are the app's ("resource", ...) properties, read and written by the deploy
(paas.deploy.state); DEFAULT_PROCESS_TYPE's apply to every type without its own. Changing them
goes through the deploy's set_limits, which rolls a running app out with them.
"""

from __future__ import annotations

import math

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.core.models import DEFAULT_PROCESS_TYPE, Limits
from paas.core.names import validate_process_type
from paas.core.units import binary_size, parse_memory
from paas.errors import UsageError

# A limit of 0 removes the limit (unlimited), as in Dokku.
UNLIMITED = "0"


def parse_memory_limit(text: str) -> int:
    return 0 if text.strip() == UNLIMITED else parse_memory(text)


def parse_cpus(text: str) -> float:
    try:
        cpus = float(text)
    except ValueError:
        raise UsageError(f"invalid number of CPUs {text!r}: use a number like 0.5 or 2") from None
    if not 0 <= cpus < math.inf:
        raise UsageError("the number of CPUs must be 0 (unlimited) or more")
    return cpus


def _show(app: str, limits: dict[str, Limits], fmt: str) -> None:
    def text() -> None:
        click.echo(f"=====> {app} resource limits")
        if not limits:
            click.echo("       none (unlimited)")
        for process_type, limit in sorted(limits.items()):
            memory, cpus = limit.memory_bytes, limit.cpus
            click.echo(f"       {process_type + ':':<12} memory "
                       f"{binary_size(memory) if memory else 'unlimited'}, cpus {cpus or 'unlimited'}")

    emit(fmt, {t: limit.to_json() for t, limit in limits.items()}, text)


@click.command("resource:limit")
@click.argument("app")
@click.option("--process-type", "process_type", default=None,
              help="The process type to limit (default: every type without its own limits).")
@click.option("--memory", default=None, help="Memory limit: 256m, 1g, 1.5g, bytes; 0: unlimited.")
@click.option("--cpus", "--cpu", "cpus", default=None, help="CPUs the type may use, e.g. 0.5; 0: unlimited.")
@format_option
@pass_ctx
def resource_limit(
    ctx: Context, app: str, process_type: str | None, memory: str | None, cpus: str | None, fmt: str
) -> None:
    """Limit APP's memory and CPUs (a running app restarts with them); no limits given: show them."""
    require_app(ctx, app)
    target = None if process_type in (None, DEFAULT_PROCESS_TYPE) else validate_process_type(process_type)
    if memory is None and cpus is None:
        from paas.deploy.state import limits_of_app

        _show(app, limits_of_app(ctx.store, app), fmt)
        return
    memory_bytes = None if memory is None else parse_memory_limit(memory)
    cpu_count = None if cpus is None else parse_cpus(cpus)
    _apply(ctx, app, target, memory_bytes, cpu_count)


def _apply(ctx: Context, app: str, target: str | None, memory: int | None, cpus: float | None) -> None:
    from paas.deploy import operations

    click.echo(f"=====> Setting resource limits of {target or DEFAULT_PROCESS_TYPE} for {app}")
    operations.set_limits(ctx.settings, app, target, memory, cpus, user=ctx.user or "", log=click.echo)


@click.command("resource:limit-clear")
@click.argument("app")
@click.option("--process-type", "process_type", default=None,
              help="The process type to clear (default: the limits of every type).")
@pass_ctx
def resource_limit_clear(ctx: Context, app: str, process_type: str | None) -> None:
    """Remove APP's memory and CPU limits (of one process type, or the default ones)."""
    require_app(ctx, app)
    target = None if process_type in (None, DEFAULT_PROCESS_TYPE) else validate_process_type(process_type)
    _apply(ctx, app, target, 0, 0)


COMMANDS = [resource_limit, resource_limit_clear]
