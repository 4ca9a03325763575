"""The logs of an app's retired containers, kept after the containers are gone: a deploy
retires the old release's processes, and `logs APP` still shows what they said.

`keep` runs between a container's stop and its removal: its log files (the engine caps each
container's log by rotation) are hard-linked into `<logs_dir>/apps/<app>/<container id>/`
with a note of its process; only the newest KEEP_CONTAINERS per app stay, so the archive is
bounded too. Reading is scheduler.logs' business (it merges these with the live logs).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from paas.engine.engine import Engine
from paas.engine.runtime.logs import log_files
from paas.errors import ContainerError
from paas.scheduler.inspect import process_of
from paas.scheduler.local import LABEL_APP

KEEP_CONTAINERS = 30
META_FILE = "process.json"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class KeptLog:
    container_id: str
    directory: Path
    process_type: str
    index: int
    release: int

    @property
    def dyno(self) -> str:
        return f"{self.process_type}.{self.index}"


def archive_dir(logs_dir: Path, app: str) -> Path:
    """Where an app's retired logs are kept (destroy removes it, rename moves it)."""
    return logs_dir / "apps" / app


def keep(engine: Engine, container_id: str, logs_dir: Path, limit: int = KEEP_CONTAINERS) -> bool:
    """Keep the log of a stopped container of an app before it is removed, in its app's
    archive under `logs_dir`; False when there was nothing to keep or the archive could not
    be written (the removal goes on regardless)."""
    try:
        container = engine.runtime.get(container_id)
        process = process_of(container)
        app = container.labels.get(LABEL_APP, "")
        if not app or "/" in app or app.startswith("."):
            return False
        files = [Path(p) for p in log_files(engine.runtime.store.dir(container_id))]
        archive = archive_dir(logs_dir, app)
        return _write(archive, container_id, files, {
            "process_type": process.process_type, "index": process.index,
            "release": process.release,
        }) and _prune(archive, limit)
    except (ContainerError, OSError):
        return False


def _write(archive: Path, container_id: str, files: list[Path], meta: dict[str, object]) -> bool:
    present = [f for f in files if f.is_file()]
    if not present:
        return False
    final = archive / container_id
    staging = archive / f"{_TMP_PREFIX}{container_id}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for source in present:
        _link_or_copy(source, staging / source.name)
    (staging / META_FILE).write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)  # kept twice (a retire retried): the newer wins
    os.rename(staging, final)
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs nothing (the engine root and the logs share PAAS_HOME's disk);
    a copy when they do not. The container's log is closed: it stopped."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _prune(archive: Path, limit: int) -> bool:
    kept = sorted(_entries(archive), key=lambda path: path.stat().st_mtime)
    for old in kept[:max(0, len(kept) - limit)]:
        shutil.rmtree(old, ignore_errors=True)
    return True


def _entries(archive: Path) -> list[Path]:
    if not archive.is_dir():
        return []
    return [p for p in archive.iterdir() if not p.name.startswith(".") and (p / META_FILE).is_file()]


def kept_logs(archive: Path) -> list[KeptLog]:
    """The kept logs of an app (a dir that cannot be read is left out)."""
    found = []
    for entry in _entries(archive):
        try:
            meta = json.loads((entry / META_FILE).read_text())
            found.append(KeptLog(entry.name, entry, str(meta["process_type"]), int(meta["index"]),
                                 int(meta["release"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
