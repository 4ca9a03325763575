"""config:* commands: an app's environment variables (Dokku's config plugin).

Values are arbitrary strings and round-trip exactly: `config:set` splits each KEY=VALUE at the
first '=', and `config:get` prints the value as stored plus one newline. Changes go through the
deploy's update_config, which makes a release and restarts a running app unless --no-restart.
"""

from __future__ import annotations

import base64
import binascii
import shlex

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import FORMATS, emit
from paas.core.names import validate_config_key, validate_config_value
from paas.errors import UsageError

SHOW_FORMATS = (*FORMATS, "shell", "export")


def parse_assignments(pairs: tuple[str, ...], encoded: bool = False) -> dict[str, str]:
    """KEY=VALUE words -> {KEY: VALUE}; with `encoded`, each VALUE is base64 (Dokku's --encoded)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {pair!r}")
        if encoded:
            value = _decode(key, value)
        result[validate_config_key(key)] = validate_config_value(key, value)
    return result


def _decode(key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise UsageError(f"the value of {key} is not base64 of UTF-8 text") from None


def show_lines(app: str, config: dict[str, str], fmt: str) -> list[str]:
    """Dokku's `config:show` (aligned `KEY:  value`), or lines a shell can source."""
    if fmt in ("shell", "export"):
        prefix = "export " if fmt == "export" else ""
        return [f"{prefix}{key}={shlex.quote(value)}" for key, value in config.items()]
    width = max((len(key) for key in config), default=0) + 3
    return [f"=====> {app} env vars", *(f"{key + ':':<{width}}{value}" for key, value in config.items())]


_format = click.option(
    "--format", "fmt", type=click.Choice(SHOW_FORMATS), default="text", show_default=True,
    help="text for people, json, or shell/export lines a shell can source.",
)


def _show_command(name: str, summary: str) -> click.Command:
    """`config APP` and Dokku's newer name for it, `config:show APP`."""

    @click.command(name, help=summary)
    @click.argument("app")
    @_format
    @pass_ctx
    def show(ctx: Context, app: str, fmt: str) -> None:
        require_app(ctx, app)
        config = ctx.store.get_config(app)

        def text() -> None:
            for line in show_lines(app, config, fmt):
                click.echo(line)

        emit("json" if fmt == "json" else "text", config, text)

    return show


config_show = _show_command("config", "Show APP's config vars.")
config_show_alias = _show_command("config:show", "Show APP's config vars (same as `config APP`).")


@click.command("config:get")
@click.argument("app")
@click.argument("key")
@pass_ctx
def config_get(ctx: Context, app: str, key: str) -> None:
    """Print the value of KEY exactly as set; exit 1 when it is not set."""
    require_app(ctx, app)
    value = ctx.store.get_config(app).get(validate_config_key(key))
    if value is None:
        click.get_current_context().exit(1)
    click.echo(value)


@click.command("config:set")
@click.argument("app")
@click.argument("pairs", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True, help="Store the change; the app sees it at its next release.")
@click.option("--encoded", is_flag=True, help="Each VALUE is base64-encoded.")
@pass_ctx
def config_set(ctx: Context, app: str, pairs: tuple[str, ...], no_restart: bool, encoded: bool) -> None:
    """Set config vars: config:set APP [--no-restart] KEY=VALUE..."""
    require_app(ctx, app)
    changes = parse_assignments(pairs, encoded)
    from paas.deploy import operations

    click.echo("-----> Setting config vars")
    for line in show_lines(app, changes, "text")[1:]:
        click.echo(f"       {line}")
    operations.update_config(ctx.settings, app, changes, [], restart=not no_restart,
                             user=ctx.user or "", log=click.echo)


@click.command("config:unset")
@click.argument("app")
@click.argument("keys", nargs=-1, required=True)
@click.option("--no-restart", is_flag=True, help="Store the change; the app sees it at its next release.")
@pass_ctx
def config_unset(ctx: Context, app: str, keys: tuple[str, ...], no_restart: bool) -> None:
    """Unset config vars: config:unset APP [--no-restart] KEY..."""
    require_app(ctx, app)
    names = [validate_config_key(key) for key in keys]
    from paas.deploy import operations

    click.echo("-----> Unsetting config vars")
    for key in names:
        click.echo(f"       {key}")
    operations.update_config(ctx.settings, app, {}, names, restart=not no_restart,
                             user=ctx.user or "", log=click.echo)


COMMANDS = [config_show, config_show_alias, config_get, config_set, config_unset]
