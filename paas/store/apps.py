"""Apps: create (with its first member), look up, list, rename and destroy."""

from __future__ import annotations

import time

from paas.core.models import App
from paas.core.names import validate_app_name
from paas.errors import AppExistsError, AppNotFoundError
from paas.store.db import Database


class AppsMixin(Database):
    def create_app(self, name: str, member: str | None = None) -> App:
        """A new app; `member` (the creator's key name, if not an admin) may then manage it."""
        validate_app_name(name)
        app = App(name=name, created_at=time.time())
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone():
                raise AppExistsError(f"app {name!r} already exists")
            conn.execute("INSERT INTO apps VALUES (?, ?)", (app.name, app.created_at))
            if member:
                conn.execute("INSERT INTO acl VALUES (?, ?)", (name, member))
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

    def rename_app(self, old: str, new: str) -> App:
        """Rename in one statement: every table of the app follows (ON UPDATE CASCADE)."""
        validate_app_name(new)
        with self._tx() as conn:
            self._require_app(conn, old)
            if conn.execute("SELECT 1 FROM apps WHERE name = ?", (new,)).fetchone():
                raise AppExistsError(f"app {new!r} already exists")
            conn.execute("UPDATE apps SET name = ? WHERE name = ?", (new, old))
        return self.get_app(new)

    def destroy_app(self, name: str) -> None:
        """Forget the app and everything recorded of it (releases, config, domains, ACL...)."""
        with self._tx() as conn:
            if conn.execute("DELETE FROM apps WHERE name = ?", (name,)).rowcount == 0:
                raise AppNotFoundError(f"app {name!r} does not exist")
