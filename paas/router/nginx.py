"""The nginx process of one PAAS_HOME: its prefix, main config, per-app files, test and reload."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.config import Settings
from paas.errors import RouterError
from paas.router.render import render_app, render_main

NGINX_BIN = "nginx"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Nginx:
    """Our own nginx: `-p prefix -c conf` everywhere, so the system's nginx is never touched."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.nginx_dir
        self.conf = self.prefix / "nginx.conf"
        self.apps_dir = self.prefix / "apps"

    def _base_args(self) -> list[str]:
        return [NGINX_BIN, "-p", str(self.prefix), "-c", str(self.conf)]

    def prepare(self) -> None:
        """Create the prefix and write the main config; safe to call again."""
        for sub in ("apps", "logs", *(f"tmp/{d}" for d in TEMP_DIRS)):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(self.conf, render_main(self.prefix, self.settings.http_port))
        self._run("-t")

    def foreground_argv(self) -> list[str]:
        return [*self._base_args(), "-g", "daemon off;"]

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and Path(f"/proc/{pid}").exists()

    def _pid(self) -> int | None:
        try:
            return int((self.prefix / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _run(self, *args: str) -> None:
        try:
            proc = subprocess.run(
                [*self._base_args(), *args], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RouterError(f"cannot run nginx: {exc}") from exc
        if proc.returncode != 0:
            raise RouterError(f"nginx {' '.join(args)} failed: {proc.stderr.strip()}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Reloads and app file swaps are serialized across processes."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        with open(self.prefix / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def app_path(self, app: str) -> Path:
        return self.apps_dir / f"{app}.conf"

    def apply_app(self, app: str, upstreams: list[str], hostnames: list[str] | None = None) -> None:
        """Route `app` to `upstreams`; on a failed test the previous file is restored."""
        hostnames = hostnames or [f"{app}.{self.settings.domain}"]
        text = render_app(app, self.prefix, self.settings.http_port, hostnames, upstreams)
        self._swap(self.app_path(app), text)

    def remove_app(self, app: str) -> None:
        self._swap(self.app_path(app), None)

    def _swap(self, path: Path, text: str | None) -> None:
        with self._locked():
            self.apps_dir.mkdir(parents=True, exist_ok=True)
            backup = path.with_name(f".{path.name}.prev")
            had_old = path.exists()
            if had_old:
                shutil.copy2(path, backup)
            if text is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, text)
            try:
                self._run("-t")
            except RouterError:
                self._restore(path, backup, had_old)
                raise
            self._reload()

    def _restore(self, path: Path, backup: Path, had_old: bool) -> None:
        if had_old:
            os.replace(backup, path)
        else:
            path.unlink(missing_ok=True)

    def _reload(self) -> None:
        if not self.is_running():
            raise RouterError("the router (nginx) is not running: start it with scripts/up")
        self._run("-s", "reload")
