"""Rollout of a release: start its formation beside what runs, check it, switch the route,
retire the old containers. A failure before the switch removes the new containers and
leaves the old ones serving. Shared by push, config, scale, rollback, limits and restart."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence

from paas.core.models import ROUTED_TYPE, Release, ReleaseStatus
from paas.deploy import phases
from paas.deploy.context import Deployment
from paas.deploy.state import Checks, checks_of, hostnames
from paas.errors import DeployError, PaasError
from paas.router.nginx import Nginx
from paas.scheduler.local import WEB_PORT, LocalScheduler, Process


def scheduler_of(ctx: Deployment) -> LocalScheduler:
    return LocalScheduler(ctx.engine, ctx.settings.stop_timeout, ctx.settings.logs_dir)


# Retires running in threads of this process (a push's): see retire() and wait_retired().
_retiring: list[threading.Thread] = []


def roll_out(
    ctx: Deployment, release: Release, *, record: bool = True, background: bool = False
) -> list[Process]:
    """Make `release` the one running and routed. `record`: mark it succeeded or failed (a
    restart of the current release records nothing). `background`: retire the old
    containers in a thread (wait_retired() joins it). Returns the new processes."""
    scheduler = scheduler_of(ctx)
    old = [c.id for c in scheduler.containers(release.app)]
    checks = checks_of(ctx.settings, ctx.store, release.app)
    if record:
        _before_traffic(ctx, scheduler, release)
    new = start_checked(ctx, scheduler, release, checks, record=record)
    try:
        switch_route(ctx, release.app, release, new)
    except BaseException as exc:
        _abandon(ctx, scheduler, release, new, exc, record)
        if not isinstance(exc, PaasError):
            raise  # an interrupt or a bug: passed on as it is, after the cleanup
        raise _failed(release, exc, record) from exc
    if record:
        ctx.store.finish_release(release.app, release.version, ReleaseStatus.SUCCEEDED)
    retire(ctx, scheduler, checks, old, background=background)
    if record:
        phases.after_traffic(ctx, release)
    return new


def _before_traffic(ctx: Deployment, scheduler: LocalScheduler, release: Release) -> None:
    try:
        phases.before_traffic(ctx, release)
    except BaseException as exc:
        _abandon(ctx, scheduler, release, [], exc, True)
        if not isinstance(exc, PaasError):
            raise
        raise _failed(release, exc, True) from exc


def start_checked(
    ctx: Deployment, scheduler: LocalScheduler, release: Release, checks: Checks, *,
    record: bool = True,
) -> list[Process]:
    """Start the formation and check it; on failure nothing new is left running."""
    new: list[Process] = []
    try:
        start_formation(ctx, scheduler, release, new)
        check_formation(ctx, scheduler, checks, new)
    except BaseException as exc:
        _abandon(ctx, scheduler, release, new, exc, record)
        if not isinstance(exc, PaasError):
            raise
        raise _failed(release, exc, record) from exc
    return new


def _abandon(
    ctx: Deployment, scheduler: LocalScheduler, release: Release, new: list[Process],
    exc: BaseException, record: bool,
) -> None:
    if new:
        ctx.log(f"-----> Removing the {len(new)} new container(s)")
    scheduler.retire([p.container_id for p in new])
    if record:
        reason = str(exc) if isinstance(exc, PaasError) else f"interrupted: {type(exc).__name__}"
        ctx.store.finish_release(release.app, release.version, ReleaseStatus.FAILED, reason)


def _failed(release: Release, exc: PaasError, record: bool) -> DeployError:
    if record:
        return DeployError(f"{release.label} failed, the previous release keeps serving: {exc}")
    return DeployError(f"{release.label} did not start again; what ran before is untouched: {exc}")


def start_formation(
    ctx: Deployment, scheduler: LocalScheduler, release: Release, started: list[Process]
) -> None:
    """Start every container of the formation, web first, appending each to `started`."""
    suffix = secrets.token_hex(2)
    order = sorted(release.formation, key=lambda t: (t != ROUTED_TYPE, t))
    dynos = [(t, i) for t in order if t in release.processes
             for i in range(1, release.count(t) + 1)]
    if not dynos:
        ctx.log(f"-----> No processes to run: scale one with ps:scale {release.app} TYPE=N")
        return
    ctx.log("-----> Starting " + ", ".join(f"{t}.{i}" for t, i in dynos) + f" ({release.label})")
    for process_type, index in dynos:
        name = f"{release.app}.{process_type}.{index}.{release.label}-{suffix}"
        started.append(scheduler.start(release, process_type, index, name))


def check_formation(
    ctx: Deployment, scheduler: LocalScheduler, checks: Checks, processes: Sequence[Process]
) -> None:
    checked = [p for p in processes if checks.enabled(p.process_type)]
    if not checked:
        return
    listening = [p for p in checked if p.process_type == ROUTED_TYPE]
    what = f"port {WEB_PORT} accepting, " if listening else ""
    ctx.log(f"-----> Checking {', '.join(p.dyno for p in checked)} ({what}up {checks.wait:g}s)")
    started = time.monotonic()
    scheduler.check_all(checked, listening, checks.wait, checks.timeout)
    ctx.log(f"       healthy after {time.monotonic() - started:.1f}s")


def switch_route(ctx: Deployment, app: str, release: Release, processes: Sequence[Process]) -> None:
    """Route `app` to the web processes (none running: the router answers 503). An app
    whose release has no web type has no route."""
    nginx = Nginx(ctx.settings)
    if ROUTED_TYPE not in release.processes:
        if nginx.app_path(app).exists():
            nginx.remove_app(app)
        return
    webs = [p for p in processes if p.process_type == ROUTED_TYPE]
    names = hostnames(ctx.settings, ctx.store, app)
    nginx.apply_app(app, [p.address for p in webs], names)
    if webs:
        ctx.log(f"-----> Routing {', '.join(names)} to {', '.join(p.dyno for p in webs)}")
    else:
        ctx.log(f"-----> No web process running: {names[0]} answers 503")


def retire(
    ctx: Deployment, scheduler: LocalScheduler, checks: Checks, old: Sequence[str], *,
    background: bool = False,
) -> None:
    """Stop and remove the old containers, after `wait-to-retire` seconds. In the background,
    a push reports success as soon as the new release serves; a later rollout of the app
    retires whatever is still there, so no lock is needed."""
    if not old:
        return
    ctx.log(f"-----> Retiring {len(old)} old container(s)")
    if not background:
        _retire(scheduler, checks.wait_to_retire, old)
        return
    thread = threading.Thread(target=_retire, args=(scheduler, checks.wait_to_retire, old),
                              name="paas-retire")
    thread.start()
    _retiring.append(thread)


def _retire(scheduler: LocalScheduler, wait: float, old: Sequence[str]) -> None:
    if wait:
        time.sleep(wait)  # requests in flight on the old containers finish
    scheduler.retire(old)


def wait_retired() -> None:
    """Return once the background retires of this process are done (a job calls it before
    its process exits, after telling the pusher)."""
    while _retiring:
        _retiring.pop().join()
