"""What the CLI (local and over SSH) and the web do to an app: every change of its running
state goes through here, under the app's deploy lock.

Each function takes the Settings, the app and a `log` sink for progress lines (Heroku-style
`-----> ` headings, 7-space indented details). Errors are PaasError with a message a user can
act on; a failed change leaves the running release serving.

SEAM (issue 5): signatures fixed by the lead; bodies are being written by the deploy owner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from paas.config import Settings
from paas.core.models import Release

Log = Callable[[str], None]


def deploy_push(
    settings: Settings, app: str, source_dir: Path, git_sha: str, log: Log, user: str = ""
) -> Release:
    """Build the pushed tree and make it the live release (the push's deploy job)."""
    raise NotImplementedError


def update_config(
    settings: Settings, app: str, set_: dict[str, str], unset: list[str], *,
    restart: bool, user: str, log: Log,
) -> Release | None:
    """Store the config change; with `restart` and a running release, make a release with the
    new config and roll it out. Returns that release, or None when nothing was restarted."""
    raise NotImplementedError


def scale(settings: Settings, app: str, counts: dict[str, int], *, user: str, log: Log) -> Release | None:
    """Set process counts (types must exist in the current release); a new release converges
    to them. None when the app has no release yet (the counts apply to its first deploy)."""
    raise NotImplementedError


def rollback(settings: Settings, app: str, version: int | None, *, user: str, log: Log) -> Release:
    """A new release with vN's image, config, formation and limits (default: the one before
    the current release), rolled out."""
    raise NotImplementedError


def set_limits(
    settings: Settings, app: str, process_type: str | None, memory_bytes: int | None,
    cpus: float | None, *, user: str, log: Log,
) -> Release | None:
    """resource:limit: store the limits of a type (None: every type, Dokku's _default_) and,
    with a running release, make a release with them and roll it out."""
    raise NotImplementedError


def restart(settings: Settings, app: str, log: Log) -> None:
    """ps:restart: fresh containers of the current release, checked before traffic moves."""
    raise NotImplementedError


def stop(settings: Settings, app: str, log: Log) -> None:
    """ps:stop: stop every container of the app; the router answers 503 until ps:start."""
    raise NotImplementedError


def start(settings: Settings, app: str, log: Log) -> None:
    """ps:start: run the current release's formation again."""
    raise NotImplementedError


def destroy(settings: Settings, app: str, log: Log) -> None:
    """apps:destroy: containers, route, repository, build cache, images' tags and records."""
    raise NotImplementedError


def rename(settings: Settings, old: str, new: str, log: Log) -> None:
    """apps:rename: records, repository, cache and route move; containers restart as `new`."""
    raise NotImplementedError


def refresh_routes(settings: Settings, app: str) -> None:
    """Re-render the app's nginx server block (after domains:add/remove)."""
    raise NotImplementedError
