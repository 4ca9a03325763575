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

from paas.cli.access import require_app
from paas.cli.commands import HOST_ONLY
from paas.cli.context import SSH_USER_ENV, Context
from paas.config import Settings
from paas.core.names import validate_app_name
from paas.errors import AppExistsError, AppNotFoundError, UsageError
from paas.git.repos import ensure_repo, repo_path
from paas.ssh import pty
from paas.store import Store

USAGE = (
    "Usage: git push <remote> main  (remote: ssh://git@<host>:<port>/<app>)\n"
    "       ssh git@<host> -p <port> <command> [args...]  (try: help)\n"
)
GIT_COMMANDS = ("git-receive-pack", "git-upload-pack")
# The key name of whoever pushed, for the hook (which runs without PAAS_SSH_USER).
PUSH_USER_ENV = "PAAS_PUSH_USER"
CHUNK = 32 * 1024
KILL_GRACE_S = 3.0
DRAIN_AFTER_EXIT_S = 5.0
POLL_S = 0.1
SIGNAL_STATUS = 128


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run for a command line: argv, working directory and extra environment.

    `refused` names a command the door turned away: argv then prints the SSH user's help, which
    goes to stderr, and the status is 1, as the CLI answers an unknown command. `tty`: whether
    it may run on the client's pty (git speaks a binary protocol: never).
    """

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    refused: str | None = None
    tty: bool = True


def plan(settings: Settings, store: Store, command: str, user: str) -> Plan:
    """Map an exec command line to a subprocess; raises PaasError with a message for the user."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse the command: {exc}") from None
    if not words:
        raise UsageError(USAGE.rstrip())
    env = {**settings.to_env(), SSH_USER_ENV: user}
    if words[0] in GIT_COMMANDS:
        return _git_plan(settings, store, words, env, user)
    cwd = settings.home if settings.home.is_dir() else Path("/")
    if words[0] in HOST_ONLY or words[0].startswith("-"):  # `--help` is `help`; no options here
        return Plan(_cli_argv("help"), cwd, env, refused=words[0], tty=False)
    return Plan(_cli_argv(*words), cwd, env)


def _cli_argv(*words: str) -> list[str]:
    return [sys.executable, "-m", "paas.cli.main", *words]


def _git_plan(
    settings: Settings, store: Store, words: list[str], env: dict[str, str], user: str
) -> Plan:
    if len(words) != 2:
        raise UsageError(f"usage: {words[0]} '<app>'")
    app = validate_app_name(words[1].strip("/").removesuffix(".git"))
    access = Context(settings, user=user)
    if words[0] == "git-receive-pack":
        _ensure_app(store, app, user)
        require_app(access, app)
        repo = ensure_repo(settings, app)
    else:
        require_app(access, app)
        repo = repo_path(settings, app)
        if not repo.is_dir():
            raise AppNotFoundError(f"app {app!r} has no repository yet: push to it first")
    # The pre-receive hook is `paas git-hook`, a host-only command: the CLI refuses those to
    # an SSH user, so git runs it as the host's (the door checked the rights above). Who pushed
    # travels on for the release record.
    hook_env = {k: v for k, v in env.items() if k != SSH_USER_ENV}
    return Plan([words[0], str(repo)], repo, {**hook_env, PUSH_USER_ENV: user}, tty=False)


def _ensure_app(store: Store, app: str, user: str) -> None:
    """A push to a new name creates the app, with the pusher as its member."""
    try:
        store.get_app(app)
    except AppNotFoundError:
        # AppExistsError: a concurrent push created it in between; require_app then decides.
        with contextlib.suppress(AppExistsError):
            store.create_app(app, member=user)


def run(channel: paramiko.Channel, p: Plan, extra_env: dict[str, str],
        terminal: pty.Terminal | None = None) -> int:
    """Run the plan with its stdio on the channel (on `terminal` when the client asked for a
    pty); returns its exit status once all its output is sent.

    The subprocess gets its own process group (its own session) so that it, and whatever it
    spawned (git hooks, `logs -t`), can be killed when the client goes away.
    """
    env = {**os.environ, **extra_env, **p.env}
    if terminal is not None and p.tty:
        return _run_on_terminal(channel, p, env, terminal)
    proc = subprocess.Popen(
        p.argv, cwd=p.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    broken = threading.Event()
    out = channel.sendall_stderr if p.refused else channel.sendall
    pumps = [
        _thread(_pump_out, proc.stdout, out, broken),
        _thread(_pump_out, proc.stderr, channel.sendall_stderr, broken),
    ]
    _thread(_pump_in, channel, proc.stdin)
    status = _supervise(channel, proc, pumps, broken)
    if p.refused is None:
        return status
    with contextlib.suppress(OSError):
        channel.sendall_stderr(f"\nNo such command {p.refused!r}.\n".encode())
    return 1


def _run_on_terminal(
    channel: paramiko.Channel, p: Plan, env: dict[str, str], terminal: pty.Terminal
) -> int:
    proc = pty.spawn(terminal, p.argv, p.cwd, env)
    broken, exited = threading.Event(), threading.Event()
    pumps = [_thread(pty.pump_out, terminal, channel, exited, broken)]
    _thread(pty.pump_in, channel, terminal)
    return _supervise(channel, proc, pumps, broken, exited)


def _supervise(channel: paramiko.Channel, proc: subprocess.Popen[bytes],
               pumps: list[threading.Thread], broken: threading.Event,
               exited: threading.Event | None = None) -> int:
    """Wait for the process and its output; kill its group if the client leaves first."""
    exited = exited or threading.Event()
    _thread(_wait, proc, exited)  # a blocking wait: the exit is seen at once, not at a poll
    drained_by: float | None = None
    while not _settled(exited, pumps):
        if exited.is_set() and drained_by is None:
            drained_by = time.monotonic() + DRAIN_AFTER_EXIT_S
        client_gone = broken.is_set() or channel.closed or not channel.get_transport().is_active()
        # A child it left behind holding our pipes (unlike sshd, we do not wait for it forever).
        if client_gone or (drained_by is not None and time.monotonic() > drained_by):
            _kill(proc)
            break
    exited.set()
    for t in pumps:
        t.join(timeout=KILL_GRACE_S)
    status = proc.wait()
    return status if status >= 0 else SIGNAL_STATUS + -status  # a shell's code for "killed"


def _wait(proc: subprocess.Popen[bytes], exited: threading.Event) -> None:
    proc.wait()
    exited.set()


def _settled(exited: threading.Event, pumps: list[threading.Thread]) -> bool:
    """Whether the process exited and all its output is sent, waiting at most a poll or so."""
    if not exited.wait(POLL_S):
        return False
    for t in pumps:
        t.join(POLL_S)
        if t.is_alive():
            return False
    return True


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
    """Stop the process group we created for `proc`, whatever of it is left (a hook's child
    may outlive the leader): TERM, then KILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if _group_gone(proc.pid, KILL_GRACE_S):
            return


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True  # (the leader is reaped by _wait: a zombie would still count)
        time.sleep(POLL_S)
    return False


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
