"""One SSH exec request: turn its command line into a subprocess and pipe it to the channel."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import paramiko

from paas.cli.commands import HOST_ONLY
from paas.config import Settings
from paas.core.names import validate_app_name
from paas.errors import AppExistsError, AppNotFoundError, UsageError
from paas.git.repos import ensure_repo, repo_path
from paas.store import Store

USAGE = (
    "Usage: git push <remote> main  (remote: ssh://git@<host>:<port>/<app>)\n"
    "       ssh git@<host> -p <port> <command> [args...]  (try: help)\n"
)
GIT_COMMANDS = ("git-receive-pack", "git-upload-pack")
CHUNK = 32 * 1024
KILL_GRACE_S = 3.0
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run for a command line: argv, working directory and extra environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


def plan(settings: Settings, store: Store, command: str, user: str) -> Plan:
    """Map an exec command line to a subprocess; raises PaasError with a message for the user."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse the command: {exc}") from None
    if not words:
        raise UsageError(USAGE.rstrip())
    env = {**settings.to_env(), "PAAS_SSH_USER": user}
    if words[0] in GIT_COMMANDS:
        return _git_plan(settings, store, words, env)
    if words[0] in HOST_ONLY or words[0].startswith("-"):  # `--help` is `help`; no options here
        raise UsageError(f"unknown command {words[0]!r} (try: help)")
    argv = ["--help"] if words == ["help"] else words
    cwd = settings.home if settings.home.is_dir() else Path("/")
    return Plan([sys.executable, "-m", "paas.cli.main", *argv], cwd, env)


def _git_plan(settings: Settings, store: Store, words: list[str], env: dict[str, str]) -> Plan:
    if len(words) != 2:
        raise UsageError(f"usage: {words[0]} '<app>'")
    app = validate_app_name(words[1].strip("/").removesuffix(".git"))
    if words[0] == "git-receive-pack":
        _ensure_app(store, app)
        repo = ensure_repo(settings, app)
    else:
        store.get_app(app)
        repo = repo_path(settings, app)
        if not repo.is_dir():
            raise AppNotFoundError(f"app {app!r} has no repository yet: push to it first")
    return Plan([words[0], str(repo)], repo, env)


def _ensure_app(store: Store, app: str) -> None:
    try:
        store.get_app(app)
    except AppNotFoundError:
        # AppExistsError: a concurrent push created it in between, which is just as good.
        with contextlib.suppress(AppExistsError):
            store.create_app(app)


def run(channel: paramiko.Channel, p: Plan, extra_env: dict[str, str]) -> int:
    """Run the plan with stdio piped to the channel; returns its exit status.

    The subprocess gets its own process group so that it, and whatever it spawned (git
    hooks), can be killed when the client goes away.
    """
    env = {**os.environ, **extra_env, **p.env}
    proc = subprocess.Popen(
        p.argv, cwd=p.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    broken = threading.Event()
    pumps = [
        _thread(_pump_out, proc.stdout, channel.sendall, broken),
        _thread(_pump_out, proc.stderr, channel.sendall_stderr, broken),
    ]
    _thread(_pump_in, channel, proc.stdin)
    while proc.poll() is None or any(t.is_alive() for t in pumps):
        if broken.is_set() or channel.closed or not channel.get_transport().is_active():
            _kill(proc)
            break
        time.sleep(POLL_S)
    for t in pumps:
        t.join(timeout=KILL_GRACE_S)
    return proc.wait()


def _thread(target: Callable[..., None], *args: object) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def _pump_out(source: IO[bytes], send: Callable[[bytes], None], broken: threading.Event) -> None:
    try:
        while chunk := source.read1(CHUNK):  # type: ignore[attr-defined]
            send(chunk)
    except OSError:
        broken.set()  # the client is gone; the session loop kills the process
    finally:
        source.close()


def _pump_in(channel: paramiko.Channel, sink: IO[bytes]) -> None:
    try:
        while data := channel.recv(CHUNK):
            sink.write(data)
            sink.flush()
    except OSError:
        pass  # the process exited before reading all its input; its status says why
    finally:
        with contextlib.suppress(OSError):  # same: a broken pipe needs no EOF
            sink.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group we created for `proc`: TERM, then KILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def finish(channel: paramiko.Channel, status: int) -> None:
    """Exit status only after all output was sent, then EOF, then close.

    The transport itself stays up until the client disconnects (see the server's connection
    loop): closing it earlier makes clients see resets and lose the tail of the output.
    """
    try:
        channel.send_exit_status(status)
        channel.shutdown_write()
    except OSError:
        pass  # the client is gone: closing is all that is left to do
    channel.close()
