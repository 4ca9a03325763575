"""deploy(): a pushed tree becomes the app's live release, or the previous release keeps serving."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.builders.base import BuildJob
from paas.builders.registry import build
from paas.config import Settings
from paas.core.models import Release, ReleaseStatus
from paas.engine.engine import Engine
from paas.errors import DeployError, PaasError
from paas.router.nginx import Nginx
from paas.scheduler.local import LocalScheduler, Process
from paas.store import Store

Log = Callable[[str], None]
ROUTED_TYPE = "web"


def open_engine(settings: Settings) -> Engine:
    return Engine.open(settings.engine_root, settings.bridge_name, settings.subnet)


@contextmanager
def app_lock(settings: Settings, app: str, log: Log) -> Iterator[None]:
    """One deploy per app at a time; a second one waits and says so."""
    locks = settings.run_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{app}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"-----> Another deploy of {app} is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def deploy(settings: Settings, app: str, source_dir: Path, git_sha: str, log: Log) -> Release:
    started = time.monotonic()
    store = Store(settings.db_path)
    store.get_app(app)
    engine = open_engine(settings)
    with app_lock(settings, app, log):
        result = build(BuildJob(app, source_dir, engine, settings, log))
        release = store.add_release(
            app, result.image.id, result.processes, git_sha, f"deploy {git_sha[:7]}"
        )
        log(f"-----> Releasing {app} v{release.version} ({git_sha[:7]})")
        _go_live(settings, engine, store, release, log)
    log(f"-----> Launching... done, v{release.version} ({time.monotonic() - started:.1f}s)")
    log(f"       http://{app}.{settings.domain}:{settings.http_port}/ deployed")
    return release


def _go_live(settings: Settings, engine: Engine, store: Store, release: Release, log: Log) -> None:
    scheduler = LocalScheduler(engine, settings.stop_timeout)
    old = scheduler.app_containers(release.app)
    new: list[Process] = []
    try:
        if ROUTED_TYPE not in release.processes:
            raise DeployError("the app has no 'web' process type to serve")
        log(f"-----> Starting {ROUTED_TYPE}.1")
        new.append(scheduler.start(release, ROUTED_TYPE))
        log(f"-----> Checking {ROUTED_TYPE}.1 (port {new[0].port}, {settings.check_wait:.0f}s up)")
        scheduler.check(new[0], settings.check_wait, settings.check_timeout)
        Nginx(settings).apply_app(release.app, [p.address for p in new])
    except PaasError as exc:
        scheduler.retire([p.container_id for p in new])
        store.finish_release(release.app, release.version, ReleaseStatus.FAILED, str(exc))
        raise DeployError(f"v{release.version} failed, the previous release keeps serving: {exc}") from exc
    store.finish_release(release.app, release.version, ReleaseStatus.SUCCEEDED)
    if old:
        log(f"-----> Retiring {len(old)} old container(s)")
        scheduler.retire(old)
