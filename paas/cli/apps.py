"""apps:* commands: list, create, inspect, rename and destroy apps."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click

from paas.cli.access import require_app, visible_apps
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.core.names import validate_app_name
from paas.errors import AppExistsError, PaasError


@click.command("apps:list")
@format_option
@pass_ctx
def apps_list(ctx: Context, fmt: str) -> None:
    """List the apps you may manage."""
    names = visible_apps(ctx)

    def text() -> None:
        click.echo("=====> My Apps")
        for name in names:
            click.echo(name)

    emit(fmt, names, text)


@click.command("apps:create")
@click.argument("app")
@pass_ctx
def apps_create(ctx: Context, app: str) -> None:
    """Create an app (a push to a new name creates it too); you become its member."""
    from paas.git.repos import ensure_repo

    ctx.store.create_app(app, member=ctx.user)
    ensure_repo(ctx.settings, app)
    click.echo(f"-----> Creating {app}... done")


def _confirm(app: str) -> None:
    """Dokku's guard: the user types the app's name (one line from stdin; no tty needed)."""
    for line in (
        " !     WARNING: Potentially Destructive Action",
        f" !     This command will destroy app {app}.",
        f' !     To proceed, type "{app}"',
    ):
        click.echo(line, err=True)
    click.echo("> ", err=True, nl=False)
    answer = sys.stdin.readline().strip()
    if answer != app:
        raise PaasError(f"confirmation did not match {app}: aborted (or pass --force)")


@click.command("apps:destroy")
@click.argument("app")
@click.option("--force", is_flag=True, help="Do not ask to type the app's name.")
@pass_ctx
def apps_destroy(ctx: Context, app: str, force: bool) -> None:
    """Destroy an app: its containers, route, repository, cache and records."""
    require_app(ctx, app)
    if not force:
        _confirm(app)
    from paas.deploy import operations

    click.echo(f"-----> Destroying {app}")
    operations.destroy(ctx.settings, app, click.echo)
    click.echo(f"-----> {app} destroyed")


@click.command("apps:rename")
@click.argument("old")
@click.argument("new")
@pass_ctx
def apps_rename(ctx: Context, old: str, new: str) -> None:
    """Rename an app: its records, repository, route and containers follow."""
    require_app(ctx, old)
    validate_app_name(new)
    if new in {app.name for app in ctx.store.list_apps()}:
        raise AppExistsError(f"app {new!r} already exists")
    from paas.deploy import operations

    click.echo(f"-----> Renaming {old} to {new}")
    operations.rename(ctx.settings, old, new, click.echo)
    click.echo(f"-----> {old} is now {new}")


def _url(ctx: Context, app: str) -> str:
    port = ctx.settings.http_port
    return f"http://{app}.{ctx.settings.domain}" + ("" if port == 80 else f":{port}")


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def app_info(ctx: Context, app: str) -> dict[str, Any]:
    """What apps:info shows, as JSON-ready data."""
    record = ctx.store.get_app(app)
    release = ctx.store.current_release(app)
    formation = release.formation if release else ctx.store.get_formation(app)
    return {
        "name": app,
        "created": _iso(record.created_at),
        "release": release.label if release else None,
        "deployed": _iso(release.created_at) if release else None,
        "git_sha": release.git_sha if release else None,
        "image": release.image if release else None,
        "processes": dict(formation),
        "domains": [f"{app}.{ctx.settings.domain}", *ctx.store.list_domains(app)],
        "url": _url(ctx, app),
        "builder": ctx.store.get_props(app, "builder").get("selected") or "detect",
        "members": ctx.store.acl_list(app),
    }


def _info_text(info: dict[str, Any]) -> None:
    click.echo(f"=====> {info['name']} app information")
    for key, value in info.items():
        if isinstance(value, dict):
            value = " ".join(f"{t}={n}" for t, n in value.items()) or "none"
        elif isinstance(value, list):
            value = " ".join(value) or "none"
        label = key.replace("_", " ").capitalize() + ":"
        click.echo(f"       {label:<12}{'none' if value is None else value}")


@click.command("apps:info")
@click.argument("app")
@format_option
@pass_ctx
def apps_info(ctx: Context, app: str, fmt: str) -> None:
    """Show an app: its release, processes, domains, URL, builder and members."""
    require_app(ctx, app)
    info = app_info(ctx, app)
    emit(fmt, info, lambda: _info_text(info))


COMMANDS = [apps_list, apps_create, apps_destroy, apps_rename, apps_info]
