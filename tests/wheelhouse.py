"""A local pip index for the tests, so containers never need the internet for `pip install`.

Wheels of the requirements (flask and its dependencies by default) are downloaded once with the
HOST's pip for the stack's Python (3.11, manylinux x86_64) into a cache kept across runs
(WHEEL_CACHE; CI pays it once per run), then served as a find-links page by a
ThreadingHTTPServer in a thread:

    with serve_wheels(gateway_ip) as index:          # index.url, index.stop
        config = pip_config(index.url)               # PIP_NO_INDEX, PIP_FIND_LINKS, ...

Bind the host side of the engine's bridge (its gateway address) so a container reaches it, or
bind 0.0.0.0 and pass `advertise=` the address containers should use.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

WHEEL_CACHE = Path(os.environ.get("PAAS_TEST_WHEELS", "/var/tmp/paas-test-wheels"))
DEFAULT_REQUIREMENTS = ("flask",)
STACK_PYTHON = "3.11"
PLATFORM = "manylinux2014_x86_64"
DONE_MARKER = ".complete"


class WheelIndex(NamedTuple):
    url: str  # e.g. http://10.1.2.1:41234/ : a find-links page listing every wheel
    stop: Callable[[], None]


def wheel_dir(requirements: Sequence[str] = DEFAULT_REQUIREMENTS) -> Path:
    """The folder of wheels for these requirements, downloaded on first use (one downloader
    at a time across processes; a folder is used only once complete)."""
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    folder = WHEEL_CACHE / key
    if (folder / DONE_MARKER).exists():
        return folder
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    with _lock(WHEEL_CACHE / f"{key}.lock"):
        if not (folder / DONE_MARKER).exists():
            _download(folder, requirements)
    return folder


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _download(folder: Path, requirements: Sequence[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", STACK_PYTHON, "--implementation", "cp",
         "--platform", PLATFORM, "--dest", str(folder), *requirements],
        check=True,
    )
    (folder / DONE_MARKER).write_text("\n".join(requirements) + "\n")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; says wheels may be cached, as PyPI does, so pip's cache fills."""

    def end_headers(self) -> None:
        if self.path.endswith(".whl"):
            self.send_header("Cache-Control", "public, max-age=86400")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass


@contextlib.contextmanager
def serve_wheels(
    host: str,
    *,
    port: int = 0,
    requirements: Sequence[str] = DEFAULT_REQUIREMENTS,
    advertise: str | None = None,
) -> Iterator[WheelIndex]:
    """Serve the wheels on host:port (0: a free port) until the block ends (or stop())."""
    handler = functools.partial(_QuietHandler, directory=str(wheel_dir(requirements)))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.shutdown()
            server.server_close()
            thread.join()

    try:
        yield WheelIndex(f"http://{advertise or host}:{server.server_address[1]}/", stop)
    finally:
        stop()


def pip_config(url: str) -> dict[str, str]:
    """Config vars that make pip install from this index only (as an app's config, or env)."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": url,
        "PIP_TRUSTED_HOST": urllib.parse.urlsplit(url).hostname or "",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
