"""A deploy rig for the pipeline and operations tests: a PAAS_HOME with its own engine root
(busybox), bridge and subnet, a real nginx on a free loopback port, and a store. Apps are
pushed as a Dockerfile `FROM busybox` plus a Procfile whose web process is busybox's httpd
serving a page that shows its environment, so what a container sees is read over HTTP."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from platformkit import leftovers
from testkit import free_port, random_subnet, stop_process, wait_until

from paas.config import Settings
from paas.core.models import Release
from paas.deploy.context import open_engine
from paas.deploy.pipeline import deploy
from paas.deploy.rollout import wait_retired
from paas.engine.baseimages import build_busybox
from paas.engine.containers import Container
from paas.engine.engine import Engine
from paas.router.nginx import Nginx
from paas.scheduler.local import LABEL_INDEX, LABEL_PROCESS, LABEL_RELEASE
from paas.store import Store

# The page says what the process sees: its DYNO and the GREETING config var.
WEB = ('mkdir -p /w && echo "$GREETING from $DYNO" > /w/index.html '
       '&& exec httpd -f -p $PORT -h /w')
WORKER = 'echo "worker $GREETING up" && exec sleep 100000'
# A web process that crashes when the config says so.
CRASHY_WEB = f'[ "$CRASH" = 1 ] && echo "crashing on purpose" && exit 3; {WEB}'


@dataclass
class Rig:
    settings: Settings
    store: Store
    engine: Engine
    nginx: Nginx
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def push(self, app: str, procfile: dict[str, str], sha: str = "a" * 40) -> Release:
        """Deploy a `FROM busybox` app with this Procfile through the real pipeline."""
        with tempfile.TemporaryDirectory(dir=self.settings.home) as tmp:
            source = Path(tmp)
            (source / "Dockerfile").write_text("FROM busybox\n")
            (source / "Procfile").write_text("".join(f"{t}: {c}\n" for t, c in procfile.items()))
            try:
                return deploy(self.settings, app, source, sha, self.log)
            finally:
                wait_retired()  # what the deploy job does before it ends

    def get(self, app: str, host: str | None = None) -> tuple[int, str]:
        """GET / through the router with Host APP.localhost (or `host`), on a new connection."""
        address, name = ("127.0.0.1", self.settings.http_port), host or f"{app}.{self.settings.domain}"
        try:
            return _get(address, name)
        except TimeoutError as exc:
            # Seen about once in 300 requests right after a rollout, not understood yet (the
            # router's worker idle, no connection in nginx, the container answering directly):
            # shown in the warnings summary of every run it happens in, and retried once.
            warnings.warn(f"no answer through the router ({exc}); retrying once: {self.diagnosis(app)}",
                          stacklevel=2)
        try:
            return _get(address, name)
        except TimeoutError:
            raise AssertionError(f"no answer through the router: {self.diagnosis(app)}") from None

    def diagnosis(self, app: str) -> str:
        """What a router that hangs leaves to look at: nginx's view, the containers, ARP."""
        logs = self.settings.nginx_dir / "logs"
        parts = [f"error log: {_tail(logs / f'{app}.error.log')}",
                 f"config: {_tail(self.nginx.app_path(app))}"]
        for c in self.containers(app):
            try:
                direct = _get((c.state.ip or "", 5000), "direct", timeout=3)
            except OSError as exc:
                direct = (0, repr(exc))
            parts.append(f"{c.name} {c.status.value} {c.state.ip}: direct GET {direct}")
        neigh = subprocess.run(["ip", "neigh", "show", "dev", self.settings.bridge_name],
                               capture_output=True, text=True)
        parts.append(f"neighbours: {neigh.stdout.strip()}")
        port = self.settings.http_port
        both = subprocess.run(["ss", "-tanpo", f"( sport = :{port} or dport = :{port} )"],
                              capture_output=True, text=True)
        parts.append(f"router sockets: {both.stdout}")
        try:
            again = _get(("127.0.0.1", port), f"{app}.{self.settings.domain}", timeout=5)
            parts.append(f"a second GET: {again}")
        except OSError as exc:
            parts.append(f"a second GET: {exc!r}")
        sockets = subprocess.run(["ss", "-tnpoi"], capture_output=True, text=True)
        parts.append("sockets: " + "\n".join(
            line for line in sockets.stdout.splitlines() if "nginx" in line or ":5000" in line))
        workers = subprocess.run(["ps", "-eo", "pid,ppid,etimes,stat,wchan:20,cmd"],
                                 capture_output=True, text=True)
        parts.append("nginx: " + "\n".join(line for line in workers.stdout.splitlines() if "nginx" in line))
        return "\n".join(parts)

    def containers(self, app: str) -> list[Container]:
        from paas.scheduler.local import LABEL_APP

        return self.engine.runtime.list({LABEL_APP: app})

    def dynos(self, app: str) -> list[tuple[str, str, str, str]]:
        """(type, index, release, status) of the app's containers, sorted."""
        return sorted((c.labels[LABEL_PROCESS], c.labels[LABEL_INDEX], c.labels[LABEL_RELEASE],
                       c.status.value) for c in self.containers(app))


def _get(address: tuple[str, int], host: str, timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.connect()
        assert conn.sock is not None
        ends = (conn.sock.fileno(), conn.sock.getsockname(), conn.sock.getpeername())
        conn.request("GET", "/", headers={"Host": host})
        try:
            response = conn.getresponse()
        except TimeoutError:
            raise TimeoutError(f"timed out; the socket was {ends}, now {_ends(conn)}") from None
        return response.status, response.read().decode()
    finally:
        conn.close()


def _ends(conn: http.client.HTTPConnection) -> object:
    """What the client's fd is now: if it names another socket, the fd number was reused."""
    try:
        assert conn.sock is not None
        fd = conn.sock.fileno()
        probe = socket.socket(fileno=os.dup(fd))
        try:
            return (fd, probe.getsockname(), probe.getpeername(), os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            probe.close()
    except OSError as exc:
        return repr(exc)


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return repr(exc)


def rig_settings(home: Path) -> Settings:
    return Settings(home=home, http_port=free_port(), subnet=random_subnet(), check_wait=0.3,
                    wait_to_retire=0.0,
                    check_timeout=20.0, stop_timeout=2.0)


@pytest.fixture(scope="module", name="rig")
def rig_fixture() -> Iterator[Rig]:
    """`rig`, one per test module (import rig_fixture): tests use apps of their own names."""
    home = Path(tempfile.mkdtemp(prefix="paas-d-", dir="/tmp"))
    settings = rig_settings(home)
    engine = open_engine(settings)
    nginx = Nginx(settings)
    proc: subprocess.Popen[bytes] | None = None
    try:
        build_busybox(engine.images, lambda line: None)
        nginx.prepare()
        proc = subprocess.Popen(nginx.foreground_argv())
        wait_until(nginx.is_running, what="nginx")
        yield Rig(settings, Store(settings.db_path), engine, nginx)
    finally:
        engine.runtime.cleanup_all(timeout=1)
        if proc is not None:
            stop_process(proc)
        left = leftovers(home, settings.bridge_name)
        shutil.rmtree(home, ignore_errors=True)
    assert not left, f"the rig left these behind: {left}"


def bodies(rig: Rig, app: str, count: int) -> list[str]:
    return [rig.get(app)[1].strip() for _ in range(count)]


def wait_gone(rig: Rig, app: str) -> None:
    wait_until(lambda: not rig.containers(app), timeout=20, what=f"{app}'s containers to go")


rig = rig_fixture  # the same fixture, for modules that import it as `rig`
