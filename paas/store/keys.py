"""Deploy keys: the SSH public keys the server accepts; a key's name is its user."""

from __future__ import annotations

import time
from typing import Any

from paas.core.keys import fingerprint, parse_public_key
from paas.core.models import DeployKey
from paas.core.names import validate_key_name
from paas.errors import KeyInvalidError, KeyNotFoundError
from paas.store.db import Database


class KeysMixin(Database):
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
            # A later key of the same name must not inherit the memberships of this one.
            conn.execute("DELETE FROM acl WHERE user = ?", (name,))

    def list_keys(self) -> list[DeployKey]:
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT * FROM keys ORDER BY name").fetchall()
        return [_key(r) for r in rows]

    def key_by_fingerprint(self, fp: str) -> DeployKey | None:
        with self._tx(write=False) as conn:
            r = conn.execute("SELECT * FROM keys WHERE fingerprint = ?", (fp,)).fetchone()
        return _key(r) if r else None

    def key_by_name(self, name: str) -> DeployKey | None:
        with self._tx(write=False) as conn:
            r = conn.execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone()
        return _key(r) if r else None


def _key(r: tuple[Any, ...]) -> DeployKey:
    return DeployKey(r[0], r[1], r[2], bool(r[3]), r[4])
