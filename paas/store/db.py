"""The Store: apps, releases and deploy keys in one SQLite file, every write in a transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.core.keys import fingerprint, parse_public_key
from paas.core.models import App, DeployKey, Release, ReleaseStatus
from paas.core.names import validate_app_name, validate_key_name
from paas.errors import (
    AppExistsError,
    AppNotFoundError,
    KeyInvalidError,
    KeyNotFoundError,
    StateError,
)

BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    image TEXT NOT NULL,
    processes TEXT NOT NULL,
    git_sha TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (app, version)
);
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
"""


class Store:
    """Apps, releases and keys. Open one per process; connections are per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._init()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction; writers take the lock up front (IMMEDIATE) so they never deadlock
        upgrading, readers do not take it at all and, with WAL, never wait for a writer."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateError(f"state database error: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc
        with self._tx() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # apps
    def create_app(self, name: str) -> App:
        validate_app_name(name)
        app = App(name=name, created_at=time.time())
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone():
                raise AppExistsError(f"app {name!r} already exists")
            conn.execute("INSERT INTO apps VALUES (?, ?)", (app.name, app.created_at))
        return app

    def get_app(self, name: str) -> App:
        with self._tx(write=False) as conn:
            row = conn.execute("SELECT name, created_at FROM apps WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AppNotFoundError(f"app {name!r} does not exist")
        return App(*row)

    def list_apps(self) -> list[App]:
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT name, created_at FROM apps ORDER BY name").fetchall()
        return [App(*row) for row in rows]

    # releases
    def add_release(
        self, app: str, image: str, processes: dict[str, str], git_sha: str, description: str
    ) -> Release:
        """Record a new pending release with the next version number."""
        with self._tx() as conn:
            if not conn.execute("SELECT 1 FROM apps WHERE name = ?", (app,)).fetchone():
                raise AppNotFoundError(f"app {app!r} does not exist")
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app = ?", (app,)
            ).fetchone()
            release = Release(
                app=app, version=last + 1, image=image, processes=dict(processes),
                git_sha=git_sha, description=description, created_at=time.time(),
            )
            conn.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (app, release.version, image, json.dumps(processes), git_sha, description,
                 release.status.value, "", release.created_at),
            )
        return release

    def finish_release(self, app: str, version: int, status: ReleaseStatus, reason: str = "") -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE releases SET status = ?, reason = ? WHERE app = ? AND version = ?",
                (status.value, reason, app, version),
            )

    def list_releases(self, app: str) -> list[Release]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT * FROM releases WHERE app = ? ORDER BY version DESC", (app,)
            ).fetchall()
        return [_release(row) for row in rows]

    def current_release(self, app: str) -> Release | None:
        """The newest release that went live."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT * FROM releases WHERE app = ? AND status = ? ORDER BY version DESC LIMIT 1",
                (app, ReleaseStatus.SUCCEEDED.value),
            ).fetchone()
        return _release(row) if row else None

    # keys
    def add_key(self, name: str, public_key: str, admin: bool = False) -> DeployKey:
        validate_key_name(name)
        key_type, blob = parse_public_key(public_key)
        line = f"{key_type} {public_key.split()[1]}"
        key = DeployKey(name, fingerprint(blob), line, admin, time.time())
        with self._tx() as conn:
            clash = conn.execute(
                "SELECT name FROM keys WHERE name = ? OR fingerprint = ?", (name, key.fingerprint)
            ).fetchone()
            if clash:
                raise KeyInvalidError(f"this key or the name {name!r} is already registered")
            conn.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                (key.name, key.fingerprint, key.public_key, int(admin), key.created_at),
            )
        return key

    def remove_key(self, name: str) -> None:
        with self._tx() as conn:
            if conn.execute("DELETE FROM keys WHERE name = ?", (name,)).rowcount == 0:
                raise KeyNotFoundError(f"no key named {name!r}")

    def list_keys(self) -> list[DeployKey]:
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT * FROM keys ORDER BY name").fetchall()
        return [DeployKey(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def key_by_fingerprint(self, fp: str) -> DeployKey | None:
        with self._tx(write=False) as conn:
            r = conn.execute("SELECT * FROM keys WHERE fingerprint = ?", (fp,)).fetchone()
        return DeployKey(r[0], r[1], r[2], bool(r[3]), r[4]) if r else None


def _release(row: tuple) -> Release:
    app, version, image, processes, sha, description, status, reason, created = row
    return Release(
        app=app, version=version, image=image, processes=json.loads(processes), git_sha=sha,
        description=description, status=ReleaseStatus(status), reason=reason, created_at=created,
    )
