"""What every deploy operation works with: settings, store, engine and a log sink, and the
per-app deploy lock that serializes them."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from paas.config import Settings
from paas.engine.engine import Engine
from paas.store import Store

Log = Callable[[str], None]
INTERRUPTED = "interrupted: the deploy stopped before it finished (its worker died)"


_engines: dict[tuple[Path, str, str], Engine] = {}


def open_engine(settings: Settings) -> Engine:
    """The process's Engine of the platform's engine root, opened on first use and kept:
    a worker or CLI process runs several operations, and opening costs each of them."""
    key = (settings.engine_root, settings.bridge_name, settings.subnet)
    if key not in _engines:
        _engines[key] = Engine.open(*key)
    return _engines[key]


def lock_path(settings: Settings, app: str) -> Path:
    return settings.run_dir / "locks" / f"{app}.lock"


@contextmanager
def app_lock(settings: Settings, app: str, log: Log) -> Iterator[None]:
    """One deploy (or change of running state) per app at a time; a second one waits and
    says so. A flock dies with its process, so a killed worker leaves no stuck lock."""
    path = lock_path(settings, app)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"-----> Another deploy of {app} is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True, slots=True)
class Deployment:
    """The platform as one operation sees it."""

    settings: Settings
    store: Store
    engine: Engine
    log: Log

    @classmethod
    def open(cls, settings: Settings, log: Log) -> Deployment:
        return cls(settings, Store(settings.db_path), open_engine(settings), log)

    @contextmanager
    def locked(self, app: str) -> Iterator[None]:
        """The app's deploy lock. Every release is made and finished under it, so a release
        still pending when the lock is taken was left by a deploy that died (a killed worker):
        it is marked failed, and the rollout that follows retires whatever that deploy started."""
        with app_lock(self.settings, app, self.log):
            dead = self.store.fail_pending(app, INTERRUPTED)
            if dead:
                labels = ", ".join(f"v{v}" for v in dead)
                self.log(f"-----> {app} {labels}: its deploy was interrupted; marked failed")
            yield
