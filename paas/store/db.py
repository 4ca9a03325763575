"""The state database: one SQLite file in WAL mode, its schema, and transactions.

Every table of an app references `apps(name)` with ON DELETE and ON UPDATE CASCADE, so
destroying or renaming an app is one statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.errors import AppNotFoundError, StateError

BUSY_TIMEOUT_S = 30.0
_APP_REF = "REFERENCES apps(name) ON DELETE CASCADE ON UPDATE CASCADE"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL {_APP_REF},
    version INTEGER NOT NULL,
    image TEXT NOT NULL,
    processes TEXT NOT NULL,
    git_sha TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    config TEXT NOT NULL DEFAULT '{{}}',
    formation TEXT NOT NULL DEFAULT '{{}}',
    limits TEXT NOT NULL DEFAULT '{{}}',
    kind TEXT NOT NULL DEFAULT 'deploy',
    user TEXT NOT NULL DEFAULT '',
    app_json TEXT NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (app, version)
);
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS config (
    app TEXT NOT NULL {_APP_REF},
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, key)
);
CREATE TABLE IF NOT EXISTS formation (
    app TEXT NOT NULL {_APP_REF},
    process_type TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (app, process_type)
);
CREATE TABLE IF NOT EXISTS props (
    app TEXT NOT NULL {_APP_REF},
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, namespace, key)
);
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY,
    app TEXT NOT NULL {_APP_REF}
);
CREATE TABLE IF NOT EXISTS acl (
    app TEXT NOT NULL {_APP_REF},
    user TEXT NOT NULL,
    PRIMARY KEY (app, user)
)
"""
# Columns added to tables of databases made before them: (table, column, definition).
MIGRATIONS = (
    ("releases", "config", "TEXT NOT NULL DEFAULT '{}'"),
    ("releases", "formation", "TEXT NOT NULL DEFAULT '{}'"),
    ("releases", "limits", "TEXT NOT NULL DEFAULT '{}'"),
    ("releases", "kind", "TEXT NOT NULL DEFAULT 'deploy'"),
    ("releases", "user", "TEXT NOT NULL DEFAULT ''"),
    ("releases", "app_json", "TEXT NOT NULL DEFAULT '{}'"),
)


class Database:
    """Connections are per call; open one Database per process."""

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
            for table, column, definition in MIGRATIONS:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @staticmethod
    def _require_app(conn: sqlite3.Connection, app: str) -> None:
        if not conn.execute("SELECT 1 FROM apps WHERE name = ?", (app,)).fetchone():
            raise AppNotFoundError(f"app {app!r} does not exist")
