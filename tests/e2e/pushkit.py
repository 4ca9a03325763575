"""A whole platform for end-to-end pushes (scripts/up on random ports, a seeded stack, an admin
deploy key) and what a user does to it: `git push` through OpenSSH with its output read as it
streams (each line stamped with its arrival time), `ssh ... COMMAND`, and GETs through the
router with the app's Host. Also the apps the tests push (Flask, Node) as file maps.

Used by test_buildpack_push.py, test_concurrency.py and bench/push.py (the `app` benchmark).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import selectors
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from platformkit import bridge_of, leftovers, platform_env, scripts_down, scripts_up, seed_engine

ROOT = Path(__file__).resolve().parents[2]
PAAS = ROOT / ".venv" / "bin" / "paas"
ADMIN = "admin"
PUSH_TIMEOUT_S = 900.0
LEFTOVER_WAIT_S = 15.0
SSH_OPTS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes")


@dataclass
class Push:
    """A running `git push`: its output lines as they arrive, stamped (seconds from the start)."""

    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    lines: list[tuple[float, str]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    returncode: int | None = None

    def start_reading(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[int, bytes] = {}
        for stream in (self.proc.stdout, self.proc.stderr):
            assert stream is not None
            sel.register(stream, selectors.EVENT_READ)
            pending[stream.fileno()] = b""
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    self._add(pending.pop(key.fd), final=True)
                    continue
                pending[key.fd] = self._add(pending[key.fd] + chunk)
        with self._cond:
            self.returncode = self.proc.wait()
            self._cond.notify_all()

    def _add(self, data: bytes, final: bool = False) -> bytes:
        """Split complete lines (git ends progress lines with \\r) off data; the rest is kept."""
        parts = re.split(rb"[\r\n]", data)
        rest = b"" if final else parts.pop()
        now = time.monotonic() - self.started
        with self._cond:
            self.lines += [(now, p.decode(errors="replace")) for p in parts if p.strip()]
            self._cond.notify_all()
        return rest

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def timed_text(self) -> str:
        """The output with each line's arrival time (seconds from the start of the push)."""
        with self._cond:
            return "\n".join(f"{at:7.2f}s {line}" for at, line in self.lines)

    def wait_for(self, needle: str, timeout: float = PUSH_TIMEOUT_S) -> float:
        """Block until a line containing needle arrived; its arrival time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.first(needle)
                if found is not None:
                    return found
                if self.returncode is not None:
                    raise AssertionError(f"the push ended without {needle!r}:\n{self.text}")
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"no {needle!r} after {timeout}s:\n{self.text}")

    def first(self, needle: str) -> float | None:
        """The arrival time of the first line containing needle, if any."""
        return next((t for t, line in self.lines if needle in line), None)

    def finish(self, timeout: float = PUSH_TIMEOUT_S) -> Push:
        """Wait for the push to end (killed, by its PID, after the timeout); returns self."""
        assert self._reader is not None
        self._reader.join(timeout)
        if self._reader.is_alive():
            self.proc.kill()
            self._reader.join()
            raise AssertionError(f"the push took over {timeout}s:\n{self.text}")
        return self

    @property
    def elapsed(self) -> float:
        return self.lines[-1][0] if self.lines else 0.0


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    key: Path

    @property
    def http_port(self) -> int:
        return int(self.env["PAAS_HTTP_PORT"])

    @property
    def ssh_port(self) -> int:
        return int(self.env["PAAS_SSH_PORT"])

    @property
    def bridge(self) -> str:
        return bridge_of(self.env)

    @property
    def gateway(self) -> str:
        """The host side of the platform's bridge: where containers reach the host."""
        return str(next(ipaddress.IPv4Network(self.env["PAAS_SUBNET"]).hosts()))

    def paas(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The local CLI, as the host operator."""
        return subprocess.run([str(PAAS), *args], env=self.env, text=True, capture_output=True,
                              timeout=timeout)

    def ssh(self, *args: str, key: Path | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-i", str(key or self.key), *SSH_OPTS, "-p", str(self.ssh_port),
                "git@127.0.0.1", *args]
        return subprocess.run(argv, text=True, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def git_env(self) -> dict[str, str]:
        return {**os.environ, "GIT_SSH_COMMAND": f"ssh -i {self.key} {' '.join(SSH_OPTS)}"}

    def git(self, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["git", *args], cwd=repo, env=self.git_env(), text=True,
                              capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start_push(self, repo: Path, *args: str) -> Push:
        """`git push paas main` (or args) started; read its output with the Push."""
        argv = ["git", "push", *(args or ("paas", "main"))]
        proc = subprocess.Popen(argv, cwd=repo, env=self.git_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        push = Push(proc)
        push.start_reading()
        return push

    def push(self, repo: Path, *args: str, ok: bool = True) -> Push:
        push = self.start_push(repo, *args).finish()
        if ok and push.returncode != 0:
            raise AssertionError(f"git push failed ({push.returncode}):\n{push.text}")
        return push

    def get(self, app: str, path: str = "/") -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                     headers={"Host": f"{app}.localhost"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def new_repo(self, parent: Path, app: str, files: dict[str, str]) -> Path:
        """A git repository of `files` with one commit and the remote `paas` for `app`."""
        repo = parent / app
        repo.mkdir(parents=True)
        self.git(repo, "init", "-q", "-b", "main")
        self.git(repo, "config", "user.email", "dev@example.com")
        self.git(repo, "config", "user.name", "Dev")
        self.git(repo, "remote", "add", "paas", f"ssh://git@127.0.0.1:{self.ssh_port}/{app}")
        write_files(repo, files)
        self.commit(repo, "first")
        return repo

    def commit(self, repo: Path, message: str, *extra: str) -> None:
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", message, *extra)


def write_files(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@contextlib.contextmanager
def running_platform(home: Path, keydir: Path, stack: Path, **env: str) -> Iterator[Platform]:
    """scripts/up on a PAAS_HOME seeded with the stack engine, an admin key added; on exit
    scripts/down, then an AssertionError if anything of the platform is left on the host."""
    seed_engine(stack, home)
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    platform = Platform(home, platform_env(home, **env), key)
    try:
        up = scripts_up(platform.env)
        assert up.returncode == 0, f"scripts/up failed:\n{up.stdout}\n{up.stderr}"
        added = platform.paas("ssh-keys:add", "--admin", ADMIN, f"{key}.pub")
        assert added.returncode == 0, added.stderr
        yield platform
    finally:
        scripts_down(platform.env)
        deadline = time.monotonic() + LEFTOVER_WAIT_S
        while (left := leftovers(home, platform.bridge)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, "the platform left things behind:\n" + "\n".join(left)


# --- the apps ---

FLASK_APP = """\
import os, uuid
from flask import Flask

app = Flask(__name__)
STARTED = uuid.uuid4().hex  # a new process answers with a new token

@app.route("/")
def index():
    return {body!r}

@app.route("/token")
def token():
    return STARTED

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
"""
FLASK_WORKER = """\
import time
print("worker ready: waiting for jobs", flush=True)
while True:
    time.sleep(1)
"""


def flask_files(body: str, worker: bool = True) -> dict[str, str]:
    procfile = "web: python app.py\n" + ("worker: python worker.py\n" if worker else "")
    files = {"requirements.txt": "flask\n", "Procfile": procfile,
             "app.py": FLASK_APP.format(body=body)}
    if worker:
        files["worker.py"] = FLASK_WORKER
    return files


NODE_SERVER = """\
const http = require("http");
http.createServer((req, res) => res.end({body})).listen(process.env.PORT, "0.0.0.0");
"""


def node_files(body: str) -> dict[str, str]:
    """package.json with a lockfile and no dependencies (no registry needed) and no Procfile:
    the buildpack's default web process, `npm start`, runs server.js."""
    package = {"name": "nodeapp", "version": "1.0.0", "private": True,
               "scripts": {"start": "node server.js"}}
    lock = {"name": "nodeapp", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "nodeapp", "version": "1.0.0"}}}
    return {"package.json": json.dumps(package, indent=2) + "\n",
            "package-lock.json": json.dumps(lock, indent=2) + "\n",
            "server.js": NODE_SERVER.format(body=json.dumps(body))}
