"""deploy(): a pushed tree becomes the app's live release, or the previous release keeps serving.

The order of a push, in one place: build (with the app's config and builder selection) ->
release (a snapshot of image, processes, config, formation and limits) -> rollout (run, check,
route, retire; see rollout.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from paas.builders.base import BuildJob
from paas.builders.registry import build
from paas.config import Settings
from paas.core.models import Release, ReleaseKind
from paas.deploy.context import Deployment, Log, open_engine
from paas.deploy.rollout import roll_out
from paas.deploy.state import formation_for, limits_of_app
from paas.errors import BuildError

__all__ = ["deploy", "open_engine"]
BUILDER = "builder"


def deploy(
    settings: Settings, app: str, source_dir: Path, git_sha: str, log: Log, user: str = ""
) -> Release:
    started = time.monotonic()
    ctx = Deployment.open(settings, log)
    ctx.store.get_app(app)
    with ctx.locked(app):
        release = _build_release(ctx, app, source_dir, git_sha, user)
        log(f"-----> Releasing {app} {release.label} ({git_sha[:7]})")
        roll_out(ctx, release, background=True)
        ctx.store.set_formation(app, release.formation)
    log(f"-----> Launching... done, {release.label} ({time.monotonic() - started:.1f}s)")
    log(f"       http://{app}.{settings.domain}:{settings.http_port}/ deployed")
    return release


def _build_release(ctx: Deployment, app: str, source: Path, git_sha: str, user: str) -> Release:
    store = ctx.store
    config = store.get_config(app)
    selected = store.get_props(app, BUILDER).get("selected", "")
    result = build(BuildJob(app, source, ctx.engine, ctx.settings, ctx.log, config=config,
                            selected=selected))
    if not result.processes:
        raise BuildError("the build declared no process types: add a Procfile")
    return store.add_release(
        app, result.image.id, result.processes, git_sha, f"deploy {git_sha[:7]}",
        config=config, formation=formation_for(result.processes, store.get_formation(app)),
        limits=limits_of_app(store, app), kind=ReleaseKind.DEPLOY, user=user,
    )
