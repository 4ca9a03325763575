"""builder:set: pin the builder of an app (Dokku's builder plugin), or go back to detection."""

from __future__ import annotations

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.errors import UsageError

NAMESPACE = "builder"
SELECTED = "selected"
# The builders a user may pin; "" (or no value) clears the pin: detection decides again.
BUILDERS = ("dockerfile", "buildpack")


@click.command("builder:set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False, default="")
@pass_ctx
def builder_set(ctx: Context, app: str, key: str, value: str) -> None:
    """Set APP's builder: builder:set APP selected dockerfile|buildpack ("" to detect)."""
    require_app(ctx, app)
    if key != SELECTED:
        raise UsageError(f"unknown builder property {key!r}: the only one is {SELECTED!r}")
    if value and value not in BUILDERS:
        raise UsageError(f"unknown builder {value!r}: use one of {', '.join(BUILDERS)} or \"\"")
    ctx.store.set_prop(app, NAMESPACE, SELECTED, value or None)
    if value:
        click.echo(f"=====> Setting {SELECTED} to {value} for {app}")
    else:
        click.echo(f"=====> Unsetting {SELECTED} for {app}: the builder is detected at each push")


COMMANDS = [builder_set]
