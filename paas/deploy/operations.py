"""What the CLI (local and over SSH) and the web do to an app: every change of its running
state goes through here, under the app's deploy lock.

Each function takes the Settings, the app and a `log` sink for progress lines (Heroku-style
`-----> ` headings, 7-space indented details). Errors are PaasError with a message a user can
act on; a failed change leaves the running release serving.

The bodies live in pipeline.py (push), changes.py (changes that make a release), lifecycle.py
(restart, stop, start, destroy, rename, routes); rollout.py is what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from paas.config import Settings
from paas.core.models import Release
from paas.deploy import changes, lifecycle, pipeline
from paas.deploy.context import Deployment

Log = Callable[[str], None]


def deploy_push(
    settings: Settings, app: str, source_dir: Path, git_sha: str, log: Log, user: str = ""
) -> Release:
    """Build the pushed tree and make it the live release (the push's deploy job)."""
    return pipeline.deploy(settings, app, source_dir, git_sha, log, user)


def update_config(
    settings: Settings, app: str, set_: dict[str, str], unset: list[str], *,
    restart: bool, user: str, log: Log,
) -> Release | None:
    """Store the config change; with `restart` and a running release, make a release with the
    new config and roll it out. Returns that release, or None when nothing was restarted."""
    return changes.update_config(Deployment.open(settings, log), app, set_, unset,
                                 restart=restart, user=user)


def scale(settings: Settings, app: str, counts: dict[str, int], *, user: str, log: Log) -> Release | None:
    """Set process counts (types must exist in the current release); a new release converges
    to them. None when the app has no release yet (the counts apply to its first deploy)."""
    return changes.scale(Deployment.open(settings, log), app, counts, user=user)


def rollback(settings: Settings, app: str, version: int | None, *, user: str, log: Log) -> Release:
    """A new release with vN's image, config, formation and limits (default: the one before
    the current release), rolled out."""
    return changes.rollback(Deployment.open(settings, log), app, version, user=user)


def set_limits(
    settings: Settings, app: str, process_type: str | None, memory_bytes: int | None,
    cpus: float | None, *, user: str, log: Log,
) -> Release | None:
    """resource:limit: store the limits of a type (None: every type, Dokku's _default_) and,
    with a running release, make a release with them and roll it out."""
    return changes.set_limits(Deployment.open(settings, log), app, process_type, memory_bytes,
                              cpus, user=user)


def restart(settings: Settings, app: str, log: Log) -> None:
    """ps:restart: fresh containers of the current release, checked before traffic moves."""
    lifecycle.restart(Deployment.open(settings, log), app)


def stop(settings: Settings, app: str, log: Log) -> None:
    """ps:stop: stop every container of the app; the router answers 503 until ps:start."""
    lifecycle.stop(Deployment.open(settings, log), app)


def start(settings: Settings, app: str, log: Log) -> None:
    """ps:start: run the current release's formation again."""
    lifecycle.start(Deployment.open(settings, log), app)


def destroy(settings: Settings, app: str, log: Log) -> None:
    """apps:destroy: containers, route, repository, build cache, images' tags and records."""
    lifecycle.destroy(Deployment.open(settings, log), app)


def rename(settings: Settings, old: str, new: str, log: Log) -> None:
    """apps:rename: records, repository, cache and route move; containers restart as `new`."""
    lifecycle.rename(Deployment.open(settings, log), old, new)


def refresh_routes(settings: Settings, app: str) -> None:
    """Re-render the app's nginx server block (after domains:add/remove)."""
    lifecycle.refresh_routes(Deployment.open(settings, _quiet), app)


def _quiet(line: str) -> None:
    """refresh_routes has no log: a domains command prints its own lines."""
