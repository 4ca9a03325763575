"""The nginx process of one PAAS_HOME: its prefix, main config, per-app files, test and reload."""

from __future__ import annotations

import fcntl
import http.client
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.config import Settings
from paas.errors import RouterError
from paas.router.render import render_app, render_main

NGINX_BIN = "nginx"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
RELOAD_TIMEOUT_S = 10.0
POLL_S = 0.02


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=2)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(2)
        self.sock.connect(str(self.path))


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
        generation = secrets.token_hex(8)
        text = render_app(app, self.prefix, self.settings.http_port, hostnames, upstreams, generation)
        self._swap(app, text, generation)

    def remove_app(self, app: str) -> None:
        self._swap(app, None, None)

    def _swap(self, app: str, text: str | None, generation: str | None) -> None:
        """Write (or delete) the app's file, test, reload, and return once nginx serves it."""
        path = self.app_path(app)
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
            old_workers = self._accepting_workers()
            self._reload()
            self._await_generation(app, generation)
            self._await_retired(old_workers)

    def _accepting_workers(self) -> set[int]:
        """PIDs of the master's workers that still accept connections (not shutting down)."""
        master = self._pid()
        workers = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                title = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master and title.startswith(b"nginx: worker process") and b"shutting" not in title:
                workers.add(int(entry.name))
        return workers

    def _await_retired(self, old_workers: set[int]) -> None:
        # Until the old workers are told to quit they still accept, with the old config.
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while old_workers & self._accepting_workers():
            if time.monotonic() > deadline:
                raise RouterError(f"nginx's old workers did not retire within {RELOAD_TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)

    def _generation(self, app: str) -> str | None:
        """What the control socket answers for `app`: its generation, or None if not routed."""
        conn = _UnixConnection(self.prefix / "control.sock")
        try:
            conn.request("GET", "/", headers={"Host": f"{app}.route.paas", "Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return body if response.status == 200 else None
        except OSError:
            return "unreachable"
        finally:
            conn.close()

    def _await_generation(self, app: str, generation: str | None) -> None:
        # A reload returns before the new workers take over; the push must not report
        # success while nginx still serves the old file.
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while (seen := self._generation(app)) != generation:
            if time.monotonic() > deadline:
                raise RouterError(
                    f"nginx did not take the new configuration of {app} within "
                    f"{RELOAD_TIMEOUT_S:.0f}s (it serves {seen!r})"
                )
            time.sleep(POLL_S)

    def _restore(self, path: Path, backup: Path, had_old: bool) -> None:
        if had_old:
            os.replace(backup, path)
        else:
            path.unlink(missing_ok=True)

    def _reload(self) -> None:
        if not self.is_running():
            raise RouterError("the router (nginx) is not running: start it with scripts/up")
        self._run("-s", "reload")
