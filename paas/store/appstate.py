"""An app's desired state between releases: config, formation, domains, ACL and properties.

Properties are Dokku's per-plugin settings: (namespace, key) -> text, e.g. ("builder",
"selected"), ("checks", "wait"), ("resource", "web.memory").
"""

from __future__ import annotations

from paas.core.names import validate_config_key, validate_config_value, validate_process_type
from paas.errors import DomainExistsError, PaasError
from paas.store.db import Database


class AppStateMixin(Database):
    # config
    def get_config(self, app: str) -> dict[str, str]:
        with self._tx(write=False) as conn:
            self._require_app(conn, app)
            rows = conn.execute(
                "SELECT key, value FROM config WHERE app = ? ORDER BY key", (app,)
            ).fetchall()
        return dict(rows)

    def update_config(
        self, app: str, set_: dict[str, str] | None = None, unset: list[str] | None = None
    ) -> dict[str, str]:
        """Set and unset keys in one transaction; returns the whole new config."""
        set_, unset = set_ or {}, unset or []
        for key, value in set_.items():
            validate_config_value(validate_config_key(key), value)
        for key in unset:
            validate_config_key(key)
        with self._tx() as conn:
            self._require_app(conn, app)
            conn.executemany("INSERT OR REPLACE INTO config VALUES (?, ?, ?)",
                             [(app, k, v) for k, v in set_.items()])
            conn.executemany("DELETE FROM config WHERE app = ? AND key = ?",
                             [(app, k) for k in unset])
        return self.get_config(app)

    def replace_config(self, app: str, config: dict[str, str]) -> None:
        """The whole config at once (a rollback restores an earlier release's)."""
        with self._tx() as conn:
            self._require_app(conn, app)
            conn.execute("DELETE FROM config WHERE app = ?", (app,))
            conn.executemany("INSERT INTO config VALUES (?, ?, ?)",
                             [(app, k, v) for k, v in config.items()])

    # formation
    def get_formation(self, app: str) -> dict[str, int]:
        with self._tx(write=False) as conn:
            self._require_app(conn, app)
            rows = conn.execute(
                "SELECT process_type, count FROM formation WHERE app = ? ORDER BY process_type",
                (app,),
            ).fetchall()
        return dict(rows)

    def set_formation(self, app: str, counts: dict[str, int]) -> dict[str, int]:
        """Set the counts of the named types (others keep theirs); returns the whole formation."""
        for process_type, count in counts.items():
            validate_process_type(process_type)
            if count < 0:
                raise PaasError(f"the count of {process_type} must not be negative")
        with self._tx() as conn:
            self._require_app(conn, app)
            conn.executemany("INSERT OR REPLACE INTO formation VALUES (?, ?, ?)",
                             [(app, t, c) for t, c in counts.items()])
        return self.get_formation(app)

    # properties
    def get_props(self, app: str, namespace: str) -> dict[str, str]:
        with self._tx(write=False) as conn:
            self._require_app(conn, app)
            rows = conn.execute(
                "SELECT key, value FROM props WHERE app = ? AND namespace = ? ORDER BY key",
                (app, namespace),
            ).fetchall()
        return dict(rows)

    def set_prop(self, app: str, namespace: str, key: str, value: str | None) -> None:
        """Set a property; None removes it (back to the default)."""
        with self._tx() as conn:
            self._require_app(conn, app)
            if value is None:
                conn.execute("DELETE FROM props WHERE app = ? AND namespace = ? AND key = ?",
                             (app, namespace, key))
            else:
                conn.execute("INSERT OR REPLACE INTO props VALUES (?, ?, ?, ?)",
                             (app, namespace, key, value))

    def replace_props(self, app: str, namespace: str, values: dict[str, str]) -> None:
        """The namespace's properties become exactly `values`, in one transaction."""
        with self._tx() as conn:
            self._require_app(conn, app)
            conn.execute("DELETE FROM props WHERE app = ? AND namespace = ?", (app, namespace))
            conn.executemany("INSERT INTO props VALUES (?, ?, ?, ?)",
                             [(app, namespace, k, v) for k, v in values.items()])

    # domains
    def add_domain(self, app: str, domain: str) -> None:
        with self._tx() as conn:
            self._require_app(conn, app)
            row = conn.execute("SELECT app FROM domains WHERE domain = ?", (domain,)).fetchone()
            if row:
                raise DomainExistsError(f"{domain} is already a domain of app {row[0]!r}")
            conn.execute("INSERT INTO domains VALUES (?, ?)", (domain, app))

    def remove_domain(self, app: str, domain: str) -> bool:
        """Whether the app had the domain."""
        with self._tx() as conn:
            self._require_app(conn, app)
            cursor = conn.execute("DELETE FROM domains WHERE app = ? AND domain = ?", (app, domain))
        return cursor.rowcount > 0

    def list_domains(self, app: str) -> list[str]:
        with self._tx(write=False) as conn:
            self._require_app(conn, app)
            rows = conn.execute(
                "SELECT domain FROM domains WHERE app = ? ORDER BY domain", (app,)
            ).fetchall()
        return [row[0] for row in rows]

    # acl
    def acl_add(self, app: str, user: str) -> bool:
        """Whether the user was not a member before."""
        with self._tx() as conn:
            self._require_app(conn, app)
            cursor = conn.execute("INSERT OR IGNORE INTO acl VALUES (?, ?)", (app, user))
        return cursor.rowcount > 0

    def acl_remove(self, app: str, user: str) -> bool:
        with self._tx() as conn:
            self._require_app(conn, app)
            cursor = conn.execute("DELETE FROM acl WHERE app = ? AND user = ?", (app, user))
        return cursor.rowcount > 0

    def acl_list(self, app: str) -> list[str]:
        with self._tx(write=False) as conn:
            self._require_app(conn, app)
            rows = conn.execute("SELECT user FROM acl WHERE app = ? ORDER BY user", (app,)).fetchall()
        return [row[0] for row in rows]

    def is_member(self, app: str, user: str) -> bool:
        with self._tx(write=False) as conn:
            row = conn.execute("SELECT 1 FROM acl WHERE app = ? AND user = ?", (app, user)).fetchone()
        return row is not None

    def apps_of(self, user: str) -> list[str]:
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT app FROM acl WHERE user = ? ORDER BY app", (user,)).fetchall()
        return [row[0] for row in rows]
