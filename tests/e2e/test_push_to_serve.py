"""End to end, as a user: scripts/up, ssh-keys:add, git push through OpenSSH, curl, scripts/down.

Everything is real: our SSH server, git, redis + rq, the engine (namespaces, overlay, cgroups,
veth on a bridge) and nginx. The platform runs on random loopback ports under a temp PAAS_HOME
with its own subnet, and the test checks that `scripts/down` leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from platformkit import bridge_of, leftovers, platform_env, scripts_down, scripts_up, seed_engine

from paas.engine.runtime.cgroups import group_name

ROOT = Path(__file__).resolve().parents[2]
APP_PY = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {body!r}.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    http_port: int
    ssh_port: int
    dashboard_port: int
    key: Path
    bridge: str

    def paas(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv/bin/paas"), *args], env=self.env, text=True, capture_output=True,
            timeout=120,
        )

    def git(self, repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        ssh = (
            f"ssh -i {self.key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o IdentitiesOnly=yes -o LogLevel=ERROR"
        )
        env = {**os.environ, "GIT_SSH_COMMAND": ssh}
        proc = subprocess.run(
            ["git", *args], cwd=repo, env=env, text=True, capture_output=True, timeout=600
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def get(self, app: str) -> tuple[int, str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/", headers={"Host": f"{app}.localhost"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, base_images: Path) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("paas-home")
    seed_engine(base_images, home)  # no second debootstrap
    keydir = tmp_path_factory.mktemp("keys")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = platform_env(home, PAAS_CHECK_WAIT="1", PAAS_CHECK_TIMEOUT="20")
    up = scripts_up(env)
    platform = Platform(home, env, int(env["PAAS_HTTP_PORT"]), int(env["PAAS_SSH_PORT"]),
                        int(env["PAAS_DASHBOARD_PORT"]), key, bridge_of(env))
    try:
        assert up.returncode == 0, f"scripts/up failed:\n{up.stdout}\n{up.stderr}"
        yield platform
    finally:
        scripts_down(env)


def _commit_app(repo: Path, body: str, platform: Platform, crash: bool = False) -> None:
    app = "import sys; sys.exit('boom: this release crashes on start')\n" if crash else APP_PY
    (repo / "app.py").write_text(app.format(body=body) if not crash else app)
    (repo / "Procfile").write_text("web: python3 app.py\n")
    platform.git(repo, "add", "-A")
    platform.git(repo, "commit", "-q", "-m", f"serve {body}")


def test_push_serve_update_reject_down(platform: Platform, tmp_path: Path) -> None:
    added = platform.paas("ssh-keys:add", "alice", f"{platform.key}.pub")
    assert added.returncode == 0, added.stderr

    repo = tmp_path / "myapp"
    repo.mkdir()
    platform.git(repo, "init", "-q", "-b", "main")
    platform.git(repo, "config", "user.email", "a@example.com")
    platform.git(repo, "config", "user.name", "A")
    platform.git(repo, "remote", "add", "paas",
                 f"ssh://git@127.0.0.1:{platform.ssh_port}/myapp")

    _commit_app(repo, "hello v1", platform)
    started = time.monotonic()
    first = platform.git(repo, "push", "paas", "main")
    print(f"first push took {time.monotonic() - started:.1f}s")
    assert "remote: -----> Launching... done, v1" in first.stderr, first.stderr
    assert platform.get("myapp") == (200, "hello v1")

    _commit_app(repo, "hello v2", platform)
    started = time.monotonic()
    second = platform.git(repo, "push", "paas", "main")
    print(f"second push took {time.monotonic() - started:.1f}s")
    assert "done, v2" in second.stderr
    assert platform.get("myapp") == (200, "hello v2")

    _commit_app(repo, "", platform, crash=True)
    third = platform.git(repo, "push", "paas", "main", check=False)
    assert third.returncode != 0, third.stderr
    assert "boom: this release crashes on start" in third.stderr
    assert "Push rejected" in third.stderr
    assert platform.get("myapp") == (200, "hello v2")

    listed = subprocess.run(
        ["ssh", "-i", str(platform.key), "-o", "StrictHostKeyChecking=no", "-o",
         "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(platform.ssh_port),
         "git@127.0.0.1", "apps:list"], text=True, capture_output=True, timeout=60,
    )
    assert listed.returncode == 0 and "myapp" in listed.stdout

    with urllib.request.urlopen(f"http://127.0.0.1:{platform.dashboard_port}/", timeout=10) as r:
        assert "myapp" in r.read().decode()

    # The leftover check of the next test must see what a running platform holds.
    running = "\n".join(leftovers(platform.home, platform.bridge))
    assert platform.bridge in running and group_name(platform.home / "engine") in running
    assert "process" in running


def _ensure_key(platform: Platform) -> None:
    """The deploy key, registered once: the first test adds it as a user would; a test run
    alone (-k) adds it here."""
    listed = platform.paas("ssh-keys:list")
    if "alice" not in listed.stdout:
        added = platform.paas("ssh-keys:add", "alice", f"{platform.key}.pub")
        assert added.returncode == 0, added.stderr


def _new_repo(platform: Platform, tmp_path: Path, app: str, files: dict[str, str]) -> Path:
    _ensure_key(platform)
    repo = tmp_path / app
    repo.mkdir()
    platform.git(repo, "init", "-q", "-b", "main")
    platform.git(repo, "config", "user.email", "a@example.com")
    platform.git(repo, "config", "user.name", "A")
    platform.git(repo, "remote", "add", "paas", f"ssh://git@127.0.0.1:{platform.ssh_port}/{app}")
    for name, text in files.items():
        (repo / name).write_text(text)
    platform.git(repo, "add", "-A")
    platform.git(repo, "commit", "-q", "-m", "first")
    return repo


def test_dockerfile_app_is_built_by_the_engine(platform: Platform, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ENV WWW=/www\n"
        "WORKDIR $WWW\n"
        "COPY index.html ./\n"
        "RUN echo built-by-run > run.txt\n"
        'CMD ["httpd", "-f", "-p", "5000", "-h", "/www"]\n'
    )
    repo = _new_repo(platform, tmp_path, "dockerapp", {"Dockerfile": dockerfile, "index.html": "docker!"})
    pushed = platform.git(repo, "push", "paas", "main")
    assert "Building with Dockerfile" in pushed.stderr and "Step 5/6 : RUN" in pushed.stderr
    assert platform.get("dockerapp") == (200, "docker!")


def test_unbuildable_repo_is_rejected_with_a_reason(platform: Platform, tmp_path: Path) -> None:
    repo = _new_repo(platform, tmp_path, "nothing", {"README.md": "no app here\n"})
    pushed = platform.git(repo, "push", "paas", "main", check=False)
    assert pushed.returncode != 0
    assert "Push rejected" in pushed.stderr and "no buildpack detected this app" in pushed.stderr


def test_down_leaves_nothing_behind(platform: Platform) -> None:
    down = subprocess.run([str(ROOT / "scripts/down")], env=platform.env, text=True,
                          capture_output=True, timeout=120)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 15
    while (left := leftovers(platform.home, platform.bridge)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []
