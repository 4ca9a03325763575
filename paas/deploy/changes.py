"""Changes that make a new release of a running app: config, scale, rollback and limits.

Each stores the desired state, then (when the app has a live release) derives a release from
the live one with that part changed and rolls it out under the app's lock."""

from __future__ import annotations

from paas.core.models import DEFAULT_PROCESS_TYPE, Limits, Release, ReleaseKind, ReleaseStatus
from paas.core.names import validate_process_type
from paas.deploy.context import Deployment
from paas.deploy.rollout import roll_out
from paas.deploy.state import RESOURCE, derive_release, limits_key, limits_of_app, store_limits
from paas.errors import DeployError, FormationInvalidError, ReleaseNotFoundError


def update_config(
    ctx: Deployment, app: str, set_: dict[str, str], unset: list[str], *, restart: bool,
    user: str,
) -> Release | None:
    ctx.store.update_config(app, set_, unset)
    if not restart:
        return None
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        if live is None:
            return None
        words = []
        if set_:
            words.append(f"set {', '.join(sorted(set_))}")
        if unset:
            words.append(f"unset {', '.join(unset)}")
        release = derive_release(ctx.store, live, kind=ReleaseKind.CONFIG, user=user,
                                 description="config " + "; ".join(words),
                                 config=ctx.store.get_config(app))
        return _release(ctx, release)


def scale(ctx: Deployment, app: str, counts: dict[str, int], *, user: str) -> Release | None:
    for process_type, count in counts.items():
        validate_process_type(process_type)
        if count < 0:
            raise FormationInvalidError(f"the count of {process_type} must not be negative")
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        if live is not None:
            unknown = sorted(set(counts) - set(live.processes))
            if unknown:
                raise FormationInvalidError(
                    f"{app} {live.label} has no process type {', '.join(unknown)} (it has: "
                    f"{', '.join(sorted(live.processes))})")
        ctx.store.set_formation(app, counts)
        if live is None:
            return None
        formation = {**live.formation, **counts}
        if formation == live.formation:
            ctx.log(f"-----> {_counts(formation)} is the formation already")
            return None
        release = derive_release(ctx.store, live, kind=ReleaseKind.SCALE, user=user,
                                 description=f"scale {_counts(counts)}", formation=formation)
        return _release(ctx, release)


def rollback(ctx: Deployment, app: str, version: int | None, *, user: str) -> Release:
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        if live is None:
            raise ReleaseNotFoundError(f"{app} has no live release to roll back from")
        target = ctx.store.get_release(app, version) if version else _previous(ctx, live)
        if not ctx.engine.images.has(target.image):
            raise ReleaseNotFoundError(
                f"the image of {app} {target.label} was removed; roll back to a newer release")
        release = derive_release(ctx.store, target, kind=ReleaseKind.ROLLBACK, user=user,
                                 description=f"rollback to {target.label}")
        _release(ctx, release)
        ctx.store.replace_config(app, target.config)
        ctx.store.set_formation(app, target.formation)
        store_limits(ctx.store, app, target.limits)
        return release


def _previous(ctx: Deployment, live: Release) -> Release:
    for release in ctx.store.list_releases(live.app):
        if release.version < live.version and release.status is ReleaseStatus.SUCCEEDED:
            return release
    raise ReleaseNotFoundError(f"{live.app} has no release before {live.label} to roll back to")


def set_limits(
    ctx: Deployment, app: str, process_type: str | None, memory_bytes: int | None,
    cpus: float | None, *, user: str,
) -> Release | None:
    """None leaves a limit as it is; 0 removes it (unlimited)."""
    key = limits_key(process_type)
    if key != DEFAULT_PROCESS_TYPE:
        validate_process_type(key)
    _check_limits(memory_bytes, cpus)
    if memory_bytes is not None:
        ctx.store.set_prop(app, RESOURCE, f"{key}.memory", str(memory_bytes) if memory_bytes else None)
    if cpus is not None:
        ctx.store.set_prop(app, RESOURCE, f"{key}.cpus", repr(float(cpus)) if cpus else None)
    with ctx.locked(app):
        live = ctx.store.current_release(app)
        if live is None:
            return None
        limits = limits_of_app(ctx.store, app)
        release = derive_release(ctx.store, live, kind=ReleaseKind.RESOURCE, user=user,
                                 description=f"resource {key} {_limits(limits.get(key))}",
                                 limits=limits)
        return _release(ctx, release)


def _check_limits(memory_bytes: int | None, cpus: float | None) -> None:
    if memory_bytes is not None and memory_bytes < 0:
        raise DeployError("the memory limit must not be negative")
    if cpus is not None and cpus < 0:
        raise DeployError("the CPU limit must not be negative")


def _release(ctx: Deployment, release: Release) -> Release:
    ctx.log(f"-----> Releasing {release.app} {release.label} ({release.description})")
    roll_out(ctx, release)
    ctx.log(f"-----> Done, {release.label}")
    return release


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{t}={n}" for t, n in sorted(counts.items()))


def _limits(limits: Limits | None) -> str:
    if limits is None or (limits.memory_bytes is None and limits.cpus is None):
        return "unlimited"
    parts = []
    if limits.memory_bytes is not None:
        parts.append(f"memory={limits.memory_bytes}")
    if limits.cpus is not None:
        parts.append(f"cpus={limits.cpus:g}")
    return " ".join(parts)
