"""acl:* commands: which users (SSH key names) may manage an app besides the admins."""

from __future__ import annotations

import click

from paas.cli.access import require_admin, require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.errors import KeyNotFoundError, PaasError


@click.command("acl:add")
@click.argument("app")
@click.argument("user")
@pass_ctx
def acl_add(ctx: Context, app: str, user: str) -> None:
    """Let USER (a key name) manage APP (admins only)."""
    require_admin(ctx)
    ctx.store.get_app(app)
    if ctx.store.key_by_name(user) is None:
        raise KeyNotFoundError(f"no key named {user!r}: add it with `paas ssh-keys:add {user} FILE`")
    if ctx.store.acl_add(app, user):
        click.echo(f"-----> Added {user} to the ACL of {app}")
    else:
        click.echo(f"-----> {user} is already in the ACL of {app}")


@click.command("acl:remove")
@click.argument("app")
@click.argument("user")
@pass_ctx
def acl_remove(ctx: Context, app: str, user: str) -> None:
    """Stop USER from managing APP (admins only)."""
    require_admin(ctx)
    ctx.store.get_app(app)
    if not ctx.store.acl_remove(app, user):
        raise PaasError(f"{user} is not in the ACL of {app}")
    click.echo(f"-----> Removed {user} from the ACL of {app}")


@click.command("acl:list")
@click.argument("app")
@format_option
@pass_ctx
def acl_list(ctx: Context, app: str, fmt: str) -> None:
    """List the users who may manage APP (admins may manage every app)."""
    require_app(ctx, app)
    users = ctx.store.acl_list(app)

    def text() -> None:
        click.echo(f"=====> {app} ACL")
        for user in users:
            click.echo(user)

    emit(fmt, users, text)


COMMANDS = [acl_add, acl_remove, acl_list]
