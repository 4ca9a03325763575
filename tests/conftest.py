"""Shared fixtures over the real things: a temp PAAS_HOME, redis-server, the SSH server, a
registered deploy key, rq workers. Every process started here is stopped by its PID."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from testkit import (
    REPO_ROOT,
    KeyPair,
    SSHTarget,
    accepts,
    child_env,
    free_port,
    make_keypair,
    paas_argv,
    random_subnet,
    stop_process,
    wait_until,
)

from paas.config import Settings
from paas.engine import baseimages
from paas.engine.baseimages import build_busybox, ensure_base_images
from paas.engine.engine import Engine
from paas.engine.images import ImageStore
from paas.store import Store


@pytest.fixture
def paas_home() -> Iterator[Path]:
    # Short, under /tmp: the redis unix socket path must fit in 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="paas-t-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def settings(paas_home: Path) -> Settings:
    return Settings(home=paas_home, ssh_port=free_port(), check_wait=0.0, wait_to_retire=0.0)


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.db_path)


@pytest.fixture
def redis_server(settings: Settings) -> Iterator[str]:
    """A real redis-server on the unix socket Settings point at; yields its URL."""
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    sock = settings.redis_dir / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(settings.redis_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(sock.exists, what="redis-server socket")
        yield settings.effective_redis_url
    finally:
        stop_process(proc)


@pytest.fixture
def keypair(paas_home: Path, store: Store) -> KeyPair:
    """A deploy key registered in the store under the name 'alice'."""
    keys = paas_home / "client-keys"
    keys.mkdir()
    pair = make_keypair(keys, "alice")
    store.add_key(pair.name, pair.public.read_text(), admin=True)
    return pair


@pytest.fixture
def ssh_server(settings: Settings, keypair: KeyPair) -> Iterator[SSHTarget]:
    """`paas ssh-server` in a subprocess on 127.0.0.1 and a free port."""
    proc = subprocess.Popen(
        paas_argv("ssh-server", "--host", "127.0.0.1"), env=child_env(settings),
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: accepts(settings.ssh_port) or proc.poll() is not None, what="sshd")
        assert proc.poll() is None, "the ssh server exited at start"
        yield SSHTarget(settings.ssh_port, keypair, proc.pid)
    finally:
        stop_process(proc)


WorkerStarter = Callable[..., subprocess.Popen]


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[WorkerStarter]:
    """Start rq deploy workers: `start_worker(argv=None, pythonpath=())`; all stopped after.

    The default argv is the real `paas worker`; a test may pass its own entry point and extra
    import paths (for test-only task modules).
    """
    procs: list[subprocess.Popen] = []

    def start(
        argv: Sequence[str] | None = None, pythonpath: Sequence[Path] = ()
    ) -> subprocess.Popen:
        paths = [*map(str, pythonpath), str(REPO_ROOT)]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        env = child_env(settings, PYTHONPATH=os.pathsep.join(paths))
        proc = subprocess.Popen(
            list(argv or paas_argv("worker")), env=env, cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc, timeout=15)


@pytest.fixture
def cli_engine(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The engine that `paas engine ...` opens: PAAS_HOME and a private PAAS_SUBNET are set in
    this process's environment, as a user's shell would; busybox is in its image store."""
    monkeypatch.setenv("PAAS_HOME", str(settings.home))
    monkeypatch.setenv("PAAS_SUBNET", random_subnet())
    env = Settings.from_env()
    engine = Engine.open(env.engine_root, env.bridge_name, env.subnet)
    try:
        build_busybox(engine.images, lambda line: None)
        yield engine
    finally:
        engine.runtime.cleanup_all(timeout=1)


# Where stack_engine keeps the base images between runs (override with PAAS_TEST_STACK_CACHE).
STACK_CACHE = Path(os.environ.get("PAAS_TEST_STACK_CACHE", "/var/tmp/paas-test-stack"))


@pytest.fixture(scope="session")
def stack_engine() -> Path:
    """An engine root holding busybox, debian:bookworm and the buildpack stack (STACK_REF),
    built by ensure_base_images as `paas up` builds them. Seed a PAAS_HOME with it
    (platformkit.seed_engine) or `cp -a` it, or run containers on its lowerdirs; never change
    it. It is kept across runs under a digest of baseimages.py, so a session pays for Debian
    only when the code that builds it changed (CI, starting empty, once per run); concurrent
    sessions wait on the image store's build lock."""
    key = hashlib.sha256(Path(baseimages.__file__).read_bytes()).hexdigest()[:16]
    root = STACK_CACHE / key / "engine"
    ensure_base_images(ImageStore(root), print)
    return root
