"""End to end over SSH: the commands that touch a running app, through the real platform
(scripts/up, our SSH server, OpenSSH, the engine, nginx): `run` on a pty with `ssh -t` and
without one, `logs -t` ending with its client, ps/ps:scale/releases/rollback, and a stranger's
key turned away from all of them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushkit import SSH_OPTS, Platform, running_platform
from testkit import ClientTerminal, resize_terminal, stop_process, wait_until

from paas.engine.runtime.cgroups import group_name

APP = "hello"
APP_PY = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello " + os.environ.get("GREETING", "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
WORKER_PY = """\
import itertools, time
for n in itertools.count():
    print(f"tick {n}", flush=True)
    time.sleep(0.5)
"""
FILES = {"Procfile": "web: python3 app.py\nworker: python3 worker.py\n", "app.py": APP_PY,
         "worker.py": WORKER_PY}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, stack_engine: Path) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("keys"),
                          stack_engine, PAAS_CHECK_WAIT="1", PAAS_CHECK_TIMEOUT="30") as platform:
        repo = platform.new_repo(tmp_path_factory.mktemp("src"), APP, FILES)
        platform.push(repo)
        yield platform


def ssh(platform: Platform, *words: str, key: Path | None = None) -> subprocess.CompletedProcess:
    """`ssh ... WORDS`, each word quoted for the server's shlex split, as a user would."""
    return platform.ssh(shlex.join(words), key=key)


def ssh_argv(platform: Platform, *words: str) -> list[str]:
    return ["ssh", "-i", str(platform.key), *SSH_OPTS, "-p", str(platform.ssh_port),
            "git@127.0.0.1", *words]


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_run_on_the_clients_terminal(platform: Platform) -> None:
    line = "tty; test -t 0 && echo TTY-IN; while :; do stty size; sleep 0.2; done"
    client = ClientTerminal(ssh_argv(platform, "-t", shlex.join(["run", APP, line])),
                            rows=30, columns=90)
    try:
        seen = client.read_until(b"30 90", timeout=60)
        assert b"/dev/pts/" in seen and b"TTY-IN" in seen
        resize_terminal(client.master, 40, 100)  # reaches the container's terminal
        client.read_until(b"40 100", timeout=30)
        os.write(client.master, b"\x03")  # ^C: a byte on the terminal, SIGINT in the container
        assert client.proc.wait(timeout=30) == 130  # the command's status, through ssh
    finally:
        client.close()


def _oneoffs(platform: Platform) -> list[str]:
    listed = _ok(platform.paas("engine", "ps", "-a"))
    return [line for line in listed.splitlines() if f"{APP}.run." in line]


@pytest.mark.parametrize("terminal", [True, False], ids=["pty", "pipes"])
def test_run_ends_when_the_client_leaves(platform: Platform, terminal: bool) -> None:
    words = shlex.join(["run", APP, "echo STARTED; sleep 600"])
    if terminal:
        client = ClientTerminal(ssh_argv(platform, "-t", words), rows=24, columns=80)
        proc = client.proc
    else:
        proc = subprocess.Popen(ssh_argv(platform, words), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if terminal:
            client.read_until(b"STARTED", timeout=60)
        else:
            assert proc.stdout is not None and b"STARTED" in proc.stdout.readline()
        assert _oneoffs(platform)
        proc.kill()
        proc.wait()
        wait_until(lambda: not _oneoffs(platform), timeout=30, what="the one-off removed")
    finally:
        if terminal:
            client.close()
        else:
            stop_process(proc)


def test_run_without_a_terminal_keeps_streams_and_status(platform: Platform) -> None:
    _ok(ssh(platform, "config:set", APP, 'GREETING=hi "there" $x'))
    done = ssh(platform, "run", APP, 'printf "%s|" "$GREETING"; test -t 1 || echo no-tty; '
               "echo oops >&2; exit 5")
    assert done.returncode == 5
    assert done.stdout == 'hi "there" $x|no-tty\n'
    assert "oops" in done.stderr and "oops" not in done.stdout
    assert platform.get(APP) == (200, 'hello hi "there" $x')  # the config restarted the web


def _followers(platform: Platform) -> list[int]:
    """PIDs of `paas logs APP -t` commands the SSH server runs for this platform."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
            env = (proc / "environ").read_bytes() if argv else b""
        except OSError:
            continue
        if b"paas.cli.main" in argv and b"logs" in argv and \
                f"PAAS_HOME={platform.home}".encode() in env:
            found.append(int(proc.name))
    return found


def test_logs_follow_until_the_client_leaves(platform: Platform) -> None:
    _ok(ssh(platform, "ps:scale", APP, "worker=1"))
    assert "worker.1" in _ok(ssh(platform, "ps", APP))
    client = subprocess.Popen(ssh_argv(platform, shlex.join(["logs", APP, "-t", "-p", "worker"])),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        assert client.stdout is not None
        first = client.stdout.readline()
        assert b"[worker.1]" in first and b"tick" in first, first
        later = client.stdout.readline()  # it keeps streaming
        assert b"tick" in later, later
        assert _followers(platform), "expected the `logs -t` command under the SSH server"
    finally:
        client.kill()
        client.wait()
    wait_until(lambda: not _followers(platform), timeout=20, what="logs -t gone")
    assert _ok(ssh(platform, "apps:list")).splitlines()[1:] == [APP]


def test_releases_and_rollback_over_ssh(platform: Platform) -> None:
    _ok(ssh(platform, "config:set", APP, "GREETING=second"))
    releases = json.loads(_ok(ssh(platform, "releases", APP, "--format", "json")))
    assert len(releases) >= 2
    _ok(ssh(platform, "rollback", APP))
    deadline = time.monotonic() + 30
    while platform.get(APP)[1] == "hello second":
        assert time.monotonic() < deadline, "the rollback did not restore the previous config"
        time.sleep(0.2)
    assert len(json.loads(_ok(ssh(platform, "releases", APP, "--format", "json")))) == \
        len(releases) + 1


def test_stop_start_restart_and_info_over_ssh(platform: Platform) -> None:
    _ok(ssh(platform, "ps:stop", APP))
    assert platform.get(APP)[0] == 503
    _ok(ssh(platform, "ps:start", APP))
    assert platform.get(APP)[0] == 200
    _ok(ssh(platform, "ps:restart", APP))
    assert platform.get(APP)[0] == 200
    info = json.loads(_ok(ssh(platform, "apps:info", APP, "--format", "json")))
    assert info["name"] == APP and info["release"]
    first = json.loads(_ok(ssh(platform, "releases:info", APP, "v1", "--format", "json")))
    assert first["version"] == 1


def test_a_strangers_key_changes_nothing(platform: Platform, tmp_path: Path) -> None:
    key = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    _ok(platform.paas("ssh-keys:add", "stranger", f"{key}.pub"))
    before = _ok(ssh(platform, "releases", APP, "--format", "json"))
    for words in (("run", APP, "true"), ("logs", APP), ("ps", APP), ("ps:scale", APP, "web=2"),
                  ("ps:stop", APP), ("ps:restart", APP), ("rollback", APP),
                  ("config:set", APP, "X=1"), ("apps:destroy", APP, "--force")):
        denied = ssh(platform, *words, key=key)
        assert denied.returncode == 1, words
        assert "permission denied" in denied.stderr, (words, denied.stderr)
    assert _ok(ssh(platform, "releases", APP, "--format", "json")) == before
    assert platform.get(APP)[0] == 200


def _get_host(platform: Platform, host: str) -> int:
    """The status the router answers for `host` (a custom domain, say)."""
    req = urllib.request.Request(f"http://127.0.0.1:{platform.http_port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _web_memory_limit(platform: Platform) -> int:
    """memory.limit_in_bytes (v1) or memory.max (v2) of the app's running web container."""
    processes = json.loads(_ok(ssh(platform, "ps", APP, "--format", "json")))["processes"]
    web = next(p for p in processes if p["type"] == "web" and p["status"] == "running")
    group = group_name(platform.home / "engine")
    for path in (Path("/sys/fs/cgroup/memory") / group / web["container_id"] / "memory.limit_in_bytes",
                 Path("/sys/fs/cgroup") / group / web["container_id"] / "memory.max"):
        if path.exists():
            return int(path.read_text())
    raise AssertionError(f"no memory cgroup for {web['container_id']}")


def test_domains_over_ssh_route_through_nginx(platform: Platform) -> None:
    assert _get_host(platform, "www.example.test") == 404
    _ok(ssh(platform, "domains:add", APP, "www.example.test"))
    assert _get_host(platform, "www.example.test") == 200
    listed = json.loads(_ok(ssh(platform, "domains:list", APP, "--format", "json")))
    assert "www.example.test" in listed
    bad = ssh(platform, "domains:add", APP, "evil.test;touch /tmp/paas-pwned")
    assert bad.returncode == 1 and "invalid domain" in bad.stderr
    assert not Path("/tmp/paas-pwned").exists()
    _ok(ssh(platform, "domains:remove", APP, "www.example.test"))
    assert _get_host(platform, "www.example.test") == 404
    assert platform.get(APP)[0] == 200


def test_checks_resource_and_builder_over_ssh(platform: Platform) -> None:
    _ok(ssh(platform, "checks:disable", APP, "worker"))
    report = json.loads(_ok(ssh(platform, "checks:report", APP, "--format", "json")))
    assert "worker" in json.dumps(report)
    _ok(ssh(platform, "checks:enable", APP))
    _ok(ssh(platform, "checks:set", APP, "wait", "1"))
    assert ssh(platform, "checks:set", APP, "wait", "soon").returncode == 2
    _ok(ssh(platform, "resource:limit", APP, "--process-type", "web", "--memory", "256m"))
    assert _web_memory_limit(platform) == 256 << 20
    assert "256" in _ok(ssh(platform, "resource:limit", APP, "--process-type", "web"))
    _ok(ssh(platform, "resource:limit", APP, "--process-type", "web", "--memory", "0"))
    assert _web_memory_limit(platform) > 256 << 20
    assert ssh(platform, "builder:set", APP, "selected", "kubernetes").returncode != 0
    _ok(ssh(platform, "builder:set", APP, "selected", "dockerfile"))
    info = json.loads(_ok(ssh(platform, "apps:info", APP, "--format", "json")))
    assert info["builder"] == "dockerfile"
    _ok(ssh(platform, "builder:set", APP, "selected", ""))
    assert platform.get(APP)[0] == 200


def test_rename_and_destroy_over_ssh(platform: Platform) -> None:
    _ok(ssh(platform, "apps:rename", APP, "hello-two"))
    assert platform.get("hello-two")[0] == 200
    assert platform.get(APP)[0] == 404
    _ok(ssh(platform, "apps:rename", "hello-two", APP))
    assert platform.get(APP)[0] == 200
    _ok(ssh(platform, "apps:create", "doomed"))
    kept = ssh(platform, "apps:destroy", "doomed")  # no typed confirmation on stdin
    assert kept.returncode == 1 and "doomed" in _ok(ssh(platform, "apps:list"))
    _ok(ssh(platform, "apps:destroy", "doomed", "--force"))
    assert "doomed" not in _ok(ssh(platform, "apps:list"))
