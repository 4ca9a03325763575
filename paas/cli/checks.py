"""checks:* commands: how a deploy checks new containers before traffic moves (Dokku's checks).

Stored as the app's (CHECKS, KEY) properties, read by the deploy (paas.deploy.state):
- wait, timeout, wait-to-retire: seconds (a number >= 0; timeout > 0); attempts: a count >= 1;
- disabled: the process types whose checks are skipped, comma-separated in sorted order, or
  ALL_TYPES for every type; no property means every type is checked.
"""

from __future__ import annotations

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.core.names import validate_process_type
from paas.deploy.state import ALL_TYPES, CHECKS
from paas.errors import PaasError, UsageError

DISABLED = "disabled"
SECONDS_KEYS = ("wait", "timeout", "wait-to-retire")
COUNT_KEYS = ("attempts",)
KEYS = (*SECONDS_KEYS, *COUNT_KEYS)


def parse_check_value(key: str, value: str) -> str:
    """The value to store for KEY, normalised; UsageError when it is not a fitting number."""
    if key in COUNT_KEYS:
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{key} must be a whole number of at least 1, got {value!r}")
        return str(int(value))
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{key} must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds < float("inf") or (key == "timeout" and seconds == 0):
        raise UsageError(f"{key} must be {'more than 0' if key == 'timeout' else 'at least 0'} seconds")
    return f"{seconds:g}"


@click.command("checks:set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False, default="")
@pass_ctx
def checks_set(ctx: Context, app: str, key: str, value: str) -> None:
    """Set a check property: wait, timeout, attempts or wait-to-retire (no VALUE: the default)."""
    require_app(ctx, app)
    if key not in KEYS:
        raise UsageError(f"unknown checks property {key!r}: use one of {', '.join(KEYS)}")
    if not value:
        ctx.store.set_prop(app, CHECKS, key, None)
        click.echo(f"=====> Unsetting {key} for {app}")
        return
    stored = parse_check_value(key, value)
    ctx.store.set_prop(app, CHECKS, key, stored)
    click.echo(f"=====> Setting {key} to {stored} for {app}")


def _types(args: tuple[str, ...]) -> set[str]:
    """Dokku's comma-separated list (`web,worker`); separate words work too."""
    names = {name for arg in args for name in arg.split(",") if name}
    return {validate_process_type(name) for name in names}


def _known_types(ctx: Context, app: str) -> set[str]:
    release = ctx.store.current_release(app)
    if release is None:
        raise PaasError(f"{app} has no release yet, so its process types are unknown: "
                        "run `checks:enable APP` to enable every type")
    return set(release.processes)


def _disabled(ctx: Context, app: str) -> str:
    return ctx.store.get_props(app, CHECKS).get(DISABLED, "")


def _store_disabled(ctx: Context, app: str, types: set[str] | None) -> None:
    """None: every type; an empty set: none."""
    value = ALL_TYPES if types is None else ",".join(sorted(types)) or None
    ctx.store.set_prop(app, CHECKS, DISABLED, value)


@click.command("checks:disable")
@click.argument("app")
@click.argument("process_types", nargs=-1)
@pass_ctx
def checks_disable(ctx: Context, app: str, process_types: tuple[str, ...]) -> None:
    """Skip the checks of APP's process types (default: all of them)."""
    require_app(ctx, app)
    types = _types(process_types)
    current = _disabled(ctx, app)
    if not types or current == ALL_TYPES:
        _store_disabled(ctx, app, None)
        click.echo(f"-----> Disabling checks of every process type of {app}")
        return
    _store_disabled(ctx, app, set(filter(None, current.split(","))) | types)
    click.echo(f"-----> Disabling checks of {', '.join(sorted(types))} of {app}")


@click.command("checks:enable")
@click.argument("app")
@click.argument("process_types", nargs=-1)
@pass_ctx
def checks_enable(ctx: Context, app: str, process_types: tuple[str, ...]) -> None:
    """Check APP's process types again (default: all of them)."""
    require_app(ctx, app)
    types = _types(process_types)
    if not types:
        _store_disabled(ctx, app, set())
        click.echo(f"-----> Enabling checks of every process type of {app}")
        return
    current = _disabled(ctx, app)
    disabled = _known_types(ctx, app) if current == ALL_TYPES else set(filter(None, current.split(",")))
    _store_disabled(ctx, app, disabled - types)
    click.echo(f"-----> Enabling checks of {', '.join(sorted(types))} of {app}")


@click.command("checks:report")
@click.argument("app")
@format_option
@pass_ctx
def checks_report(ctx: Context, app: str, fmt: str) -> None:
    """Show APP's check settings ("default" where none is set)."""
    require_app(ctx, app)
    props = ctx.store.get_props(app, CHECKS)
    data = {key: props.get(key) for key in (*KEYS, DISABLED)}

    def text() -> None:
        click.echo(f"=====> {app} checks information")
        for key, value in data.items():
            shown = value if value is not None else ("none" if key == DISABLED else "default")
            click.echo(f"       {(key.capitalize() + ':'):<16}{'all' if shown == ALL_TYPES else shown}")

    emit(fmt, data, text)


COMMANDS = [checks_set, checks_disable, checks_enable, checks_report]
