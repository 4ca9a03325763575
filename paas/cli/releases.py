"""releases, releases:info and rollback: an app's numbered releases (Heroku's commands).

Every deploy, config change, scale, limits change and rollback is a release vN snapshotting
image, config, formation and limits; `rollback` makes a new release from an earlier one.
"""

from __future__ import annotations

import time

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option, table
from paas.core.models import Release
from paas.errors import UsageError


def parse_version(text: str) -> int:
    """`v7` or `7` -> 7."""
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise UsageError(f"invalid release {text!r}: a version like v7")
    return int(digits)


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def release_json(release: Release, current: int | None) -> dict[str, object]:
    return {
        "version": release.version, "kind": release.kind.value, "description": release.description,
        "user": release.user, "status": release.status.value, "reason": release.reason,
        "created_at": release.created_at, "git_sha": release.git_sha, "image": release.image,
        "current": release.version == current,
    }


def _current(ctx: Context, app: str) -> int | None:
    release = ctx.store.current_release(app)
    return release.version if release else None


@click.command("releases")
@click.argument("app")
@click.option("-n", "--num", type=click.IntRange(min=1), default=None,
              help="Only the newest N releases.")
@format_option
@pass_ctx
def releases(ctx: Context, app: str, num: int | None, fmt: str) -> None:
    """List an app's releases, newest first: releases APP [--format json]."""
    require_app(ctx, app)
    found = ctx.store.list_releases(app, limit=num)
    current = _current(ctx, app)

    def text() -> None:
        live = f" - current: v{current}" if current else ""
        click.echo(f"=====> {app} releases{live}")
        rows = [(("* " if r.version == current else "  ") + r.label, r.kind.value,
                 r.description, r.user or "-", r.status.value, when(r.created_at)) for r in found]
        table(("  VERSION", "KIND", "DESCRIPTION", "BY", "STATUS", "CREATED"), rows)

    emit(fmt, [release_json(r, current) for r in found], text)


@click.command("releases:info")
@click.argument("app")
@click.argument("version")
@format_option
@pass_ctx
def releases_info(ctx: Context, app: str, version: str, fmt: str) -> None:
    """Show one release: releases:info APP vN [--format json]."""
    require_app(ctx, app)
    release = ctx.store.get_release(app, parse_version(version))
    data = {
        **release_json(release, _current(ctx, app)), "processes": release.processes,
        "formation": release.formation,
        "limits": {t: limits.to_json() for t, limits in release.limits.items()},
        "config_keys": sorted(release.config),
    }
    emit(fmt, data, lambda: _info_text(release, data))


def _info_text(release: Release, data: dict[str, object]) -> None:
    click.echo(f"=====> {release.app} {release.label}" + (" (current)" if data["current"] else ""))
    fields = [
        ("kind", release.kind.value), ("description", release.description),
        ("by", release.user or "-"), ("status", release.status.value),
        ("reason", release.reason), ("created", when(release.created_at)),
        ("git sha", release.git_sha), ("image", release.image),
        ("processes", ", ".join(f"{t}: {c}" for t, c in release.processes.items())),
        ("formation", " ".join(f"{t}={n}" for t, n in release.formation.items())),
        ("limits", " ".join(f"{t}={limits.to_json()}" for t, limits in release.limits.items())),
        ("config vars", ", ".join(sorted(release.config))),
    ]
    width = max(len(name) for name, _ in fields) + 2
    for name, value in fields:
        if value:
            click.echo(f"{name + ':':<{width}}{value}")


@click.command("rollback")
@click.argument("app")
@click.argument("version", required=False)
@pass_ctx
def rollback(ctx: Context, app: str, version: str | None) -> None:
    """Roll back to an earlier release: rollback APP [vN].

    A new release with vN's image, config, formation and limits (default: the release before
    the current one), rolled out like a deploy."""
    require_app(ctx, app)
    wanted = None if version is None else parse_version(version)
    from paas.deploy import operations  # only changes need the deploy's imports

    click.echo(f"-----> Rolling back {app} to " + (f"v{wanted}" if wanted else "the previous release"))
    release = operations.rollback(ctx.settings, app, wanted, user=ctx.user or "", log=click.echo)
    click.echo(f"-----> Rolled back: {release.description or 'rollback'}, now v{release.version}")


COMMANDS = [releases, releases_info, rollback]
