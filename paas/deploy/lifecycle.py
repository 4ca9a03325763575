"""The running state of an app without a new release: restart, stop, start, destroy, rename,
and re-rendering its route (after domains change)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

from paas.core.models import ROUTED_TYPE, Release
from paas.core.names import validate_app_name
from paas.deploy.context import Deployment, lock_path
from paas.deploy.rollout import retire, roll_out, scheduler_of, start_checked, switch_route
from paas.deploy.state import checks_of, hostnames
from paas.errors import AppExistsError, AppNotFoundError, ReleaseNotFoundError
from paas.router.nginx import Nginx
from paas.scheduler.local import Process
from paas.scheduler.logarchive import archive_dir


def _live(ctx: Deployment, app: str) -> Release:
    live = ctx.store.current_release(app)
    if live is None:
        raise ReleaseNotFoundError(f"{app} has not been deployed yet: push it first")
    return live


def restart(ctx: Deployment, app: str) -> None:
    with ctx.locked(app):
        live = _live(ctx, app)
        ctx.log(f"-----> Restarting {app} ({live.label})")
        roll_out(ctx, live, record=False)


def stop(ctx: Deployment, app: str) -> None:
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        scheduler = scheduler_of(ctx)
        containers = [c.id for c in scheduler.containers(app)]
        if live is not None:
            switch_route(ctx, app, live, [])  # 503 first, so nginx never proxies to a stopped one
        ctx.log(f"-----> Stopping {len(containers)} container(s) of {app}")
        scheduler.retire(containers)


def start(ctx: Deployment, app: str) -> None:
    with ctx.locked(app):
        live = _live(ctx, app)
        running = scheduler_of(ctx).running(app)
        if running:
            ctx.log(f"-----> {app} is running already ({', '.join(p.dyno for p in running)})")
            return
        ctx.log(f"-----> Starting {app} ({live.label})")
        roll_out(ctx, live, record=False)


def destroy(ctx: Deployment, app: str) -> None:
    """Containers (one-off runs too), route, repository, build cache, kept logs, then the
    records."""
    settings = ctx.settings
    ctx.store.get_app(app)
    with ctx.locked(app):
        scheduler = scheduler_of(ctx)
        containers = [c.id for c in scheduler.containers(app, oneoff=True)]
        ctx.log(f"-----> Destroying {app}: {len(containers)} container(s), route, repository, cache")
        _remove_route(ctx, app)
        scheduler.retire(containers)
        shutil.rmtree(settings.repos_dir / f"{app}.git", ignore_errors=True)
        shutil.rmtree(settings.cache_dir / app, ignore_errors=True)
        shutil.rmtree(archive_dir(settings.logs_dir, app), ignore_errors=True)
        ctx.store.destroy_app(app)
        lock_path(settings, app).unlink(missing_ok=True)


def _remove_route(ctx: Deployment, app: str) -> None:
    nginx = Nginx(ctx.settings)
    if nginx.app_path(app).exists():
        if nginx.is_running():
            nginx.remove_app(app)
        else:  # nothing serves it; the next start of the router must not either
            nginx.app_path(app).unlink()
    for log in ("access", "error"):
        (nginx.prefix / "logs" / f"{app}.{log}.log").unlink(missing_ok=True)


def rename(ctx: Deployment, old: str, new: str) -> None:
    """Start the app's processes as `new` and check them, then move its records, repository
    and cache, route `new`, drop the old route and retire the old containers."""
    validate_app_name(new)
    ctx.store.get_app(old)
    with ctx.locked(old), ctx.locked(new):
        _require_free(ctx, new)
        live = ctx.store.current_release(old)
        scheduler = scheduler_of(ctx)
        old_containers = [c.id for c in scheduler.containers(old)]
        renamed = dataclasses.replace(live, app=new) if live else None
        started: list[Process] = []
        if renamed is not None and old_containers:  # a stopped app stays stopped
            ctx.log(f"-----> Starting {old} as {new} ({renamed.label})")
            started = start_checked(ctx, scheduler, renamed,
                                    checks_of(ctx.settings, ctx.store, old), record=False)
        try:
            ctx.store.rename_app(old, new)
            _move(ctx.settings.repos_dir / f"{old}.git", ctx.settings.repos_dir / f"{new}.git")
            _move(ctx.settings.cache_dir / old, ctx.settings.cache_dir / new)
        except BaseException:
            scheduler.retire([p.container_id for p in started])
            raise
        if renamed is not None:
            switch_route(ctx, new, renamed, started)
        _remove_route(ctx, old)
        retire(ctx, scheduler, checks_of(ctx.settings, ctx.store, new), old_containers)
        # After the retire, which keeps the old containers' logs under the old name.
        _move(archive_dir(ctx.settings.logs_dir, old), archive_dir(ctx.settings.logs_dir, new))
        lock_path(ctx.settings, old).unlink(missing_ok=True)
    ctx.log(f"-----> Renamed {old} to {new}")


def _require_free(ctx: Deployment, name: str) -> None:
    with contextlib.suppress(AppNotFoundError):
        ctx.store.get_app(name)
        raise AppExistsError(f"app {name!r} already exists")


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)


def refresh_routes(ctx: Deployment, app: str) -> None:
    """Render the app's server block again with its current web processes and hostnames."""
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        if live is None or ROUTED_TYPE not in live.processes:
            return  # not routed yet: its first deploy renders the hostnames
        webs = [p for p in scheduler_of(ctx).running(app) if p.process_type == ROUTED_TYPE]
        switch_route(ctx, app, live, webs)
        ctx.log(f"       {app} answers to {', '.join(hostnames(ctx.settings, ctx.store, app))}")
