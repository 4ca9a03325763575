"""Releases: numbered, immutable snapshots of image, config, formation and limits."""

from __future__ import annotations

import json
import time
from typing import Any

from paas.core.appjson import AppJson
from paas.core.models import Limits, Release, ReleaseKind, ReleaseStatus
from paas.errors import ReleaseNotFoundError
from paas.store.db import Database

_COLUMNS = (
    "app, version, image, processes, git_sha, description, status, reason, created_at, "
    "config, formation, limits, kind, user, app_json"
)


class ReleasesMixin(Database):
    def add_release(
        self, app: str, image: str, processes: dict[str, str], git_sha: str, description: str,
        *, config: dict[str, str] | None = None, formation: dict[str, int] | None = None,
        limits: dict[str, Limits] | None = None, kind: ReleaseKind = ReleaseKind.DEPLOY,
        user: str = "", app_json: AppJson | None = None,
    ) -> Release:
        """Record a new pending release with the next version number."""
        with self._tx() as conn:
            self._require_app(conn, app)
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app = ?", (app,)
            ).fetchone()
            release = Release(
                app=app, version=last + 1, image=image, processes=dict(processes),
                git_sha=git_sha, description=description, created_at=time.time(),
                config=dict(config or {}), formation=dict(formation or {}),
                limits=dict(limits or {}), kind=kind, user=user,
                app_json=app_json or AppJson(),
            )
            conn.execute(f"INSERT INTO releases ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                         _row(release))
        return release

    def finish_release(self, app: str, version: int, status: ReleaseStatus, reason: str = "") -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE releases SET status = ?, reason = ? WHERE app = ? AND version = ?",
                (status.value, reason, app, version),
            )

    def fail_pending(self, app: str, reason: str) -> list[int]:
        """Mark the app's pending releases failed with `reason`; returns their versions. Called
        under the app's deploy lock, where a pending release is one whose deploy died."""
        with self._tx() as conn:
            rows = conn.execute("SELECT version FROM releases WHERE app = ? AND status = ?",
                                (app, ReleaseStatus.PENDING.value)).fetchall()
            conn.execute("UPDATE releases SET status = ?, reason = ? WHERE app = ? AND status = ?",
                         (ReleaseStatus.FAILED.value, reason, app, ReleaseStatus.PENDING.value))
        return [version for (version,) in rows]

    def list_releases(self, app: str, limit: int | None = None) -> list[Release]:
        """Newest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM releases WHERE app = ? ORDER BY version DESC LIMIT ?",
                (app, -1 if limit is None else limit),
            ).fetchall()
        return [_release(row) for row in rows]

    def get_release(self, app: str, version: int) -> Release:
        with self._tx(write=False) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM releases WHERE app = ? AND version = ?", (app, version)
            ).fetchone()
        if row is None:
            raise ReleaseNotFoundError(f"app {app!r} has no release v{version}")
        return _release(row)

    def current_release(self, app: str) -> Release | None:
        """The newest release that went live."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM releases WHERE app = ? AND status = ? "
                "ORDER BY version DESC LIMIT 1",
                (app, ReleaseStatus.SUCCEEDED.value),
            ).fetchone()
        return _release(row) if row else None


def _row(r: Release) -> tuple[Any, ...]:
    return (
        r.app, r.version, r.image, json.dumps(r.processes), r.git_sha, r.description,
        r.status.value, r.reason, r.created_at, json.dumps(r.config), json.dumps(r.formation),
        json.dumps({k: v.to_json() for k, v in r.limits.items()}), r.kind.value, r.user,
        json.dumps(r.app_json.to_json()),
    )


def _release(row: tuple[Any, ...]) -> Release:
    (app, version, image, processes, sha, description, status, reason, created,
     config, formation, limits, kind, user, app_json) = row
    return Release(
        app=app, version=version, image=image, processes=json.loads(processes), git_sha=sha,
        description=description, status=ReleaseStatus(status), reason=reason, created_at=created,
        config=json.loads(config), formation=json.loads(formation),
        limits={k: Limits.from_json(v) for k, v in json.loads(limits).items()},
        kind=ReleaseKind(kind), user=user, app_json=AppJson.from_json(json.loads(app_json)),
    )
