"""apps:* commands."""

from __future__ import annotations

import click

from paas.cli.context import Context, pass_ctx


@click.command("apps:list")
@pass_ctx
def apps_list(ctx: Context) -> None:
    """List apps."""
    click.echo("=====> My Apps")
    for app in ctx.store.list_apps():
        click.echo(app.name)


@click.command("apps:create")
@click.argument("app")
@pass_ctx
def apps_create(ctx: Context, app: str) -> None:
    """Create an app (a push to a new name creates it too)."""
    from paas.git.repos import ensure_repo

    ctx.store.create_app(app)
    ensure_repo(ctx.settings, app)
    click.echo(f"-----> Creating {app}... done")


COMMANDS = [apps_list, apps_create]
