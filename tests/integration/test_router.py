"""The router against a real nginx: routing by Host, safe swaps, rollback of a bad file."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.config import Settings
from paas.errors import RouterError
from paas.router.nginx import Nginx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, host: str) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _backend(body: str) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    settings = Settings.from_env({"PAAS_HOME": str(tmp_path), "PAAS_HTTP_PORT": str(_free_port())})
    router = Nginx(settings)
    router.prepare()
    proc = subprocess.Popen(router.foreground_argv())
    try:
        deadline = time.monotonic() + 10
        while not router.is_running():
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield router
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_routes_by_host_and_rolls_back_a_bad_file(nginx: Nginx) -> None:
    port = nginx.settings.http_port
    one, one_port = _backend("one")
    two, two_port = _backend("two")
    try:
        nginx.apply_app("alpha", [f"127.0.0.1:{one_port}"])
        nginx.apply_app("beta", [f"127.0.0.1:{two_port}"])
        assert _get(port, "alpha.localhost") == (200, "one")
        assert _get(port, "beta.localhost") == (200, "two")
        assert _get(port, "nobody.localhost")[0] == 404

        with pytest.raises(RouterError):
            nginx.apply_app("alpha", ["not-an-address:::"])
        assert f"127.0.0.1:{one_port}" in nginx.app_path("alpha").read_text()
        assert _get(port, "alpha.localhost") == (200, "one")
        assert _get(port, "beta.localhost") == (200, "two")

        nginx.apply_app("alpha", [])
        assert _get(port, "alpha.localhost")[0] == 503
        nginx.remove_app("alpha")
        assert _get(port, "alpha.localhost")[0] == 404
    finally:
        one.shutdown()
        two.shutdown()


def test_reload_without_a_running_nginx_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings.from_env({"PAAS_HOME": str(tmp_path), "PAAS_HTTP_PORT": str(_free_port())})
    router = Nginx(settings)
    router.prepare()
    with pytest.raises(RouterError, match="not running"):
        router.apply_app("alpha", ["127.0.0.1:1"])
