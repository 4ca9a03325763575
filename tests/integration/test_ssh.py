"""The SSH server with the real OpenSSH client: auth, command dispatch, safety, concurrency."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from testkit import (
    ClientTerminal,
    KeyPair,
    SSHTarget,
    make_keypair,
    make_repo,
    resize_terminal,
    wait_until,
)

from paas.cli.commands import HOST_ONLY
from paas.config import Settings
from paas.core.keys import fingerprint
from paas.ssh import pty, session
from paas.ssh.server import SSHServer, load_host_key
from paas.store import Store


def test_unknown_key_is_refused(ssh_server: SSHTarget, paas_home: Path) -> None:
    stranger = make_keypair(paas_home, "stranger")
    done = ssh_server.ssh("apps:list", key=stranger.private)
    assert done.returncode == 255
    assert "Permission denied" in done.stderr


def test_user_other_than_git_is_refused(ssh_server: SSHTarget) -> None:
    done = ssh_server.ssh("apps:list", user="root")
    assert done.returncode == 255
    assert "Permission denied" in done.stderr


def test_cli_command_runs_with_its_exit_status(ssh_server: SSHTarget, store: Store) -> None:
    store.create_app("shop")
    done = ssh_server.ssh("apps:list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["=====> My Apps", "shop"]
    again = ssh_server.ssh("apps:create", "shop")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_command_sees_the_key_name(ssh_server: SSHTarget) -> None:
    # The key name travels as PAAS_SSH_USER; ssh-keys:list shows the key it belongs to.
    done = ssh_server.ssh("ssh-keys:list")
    assert done.returncode == 0
    assert done.stdout.startswith("alice SHA256:")


def test_help_and_unknown_command(ssh_server: SSHTarget) -> None:
    helped = ssh_server.ssh("help")
    assert helped.returncode == 0
    assert "apps:list" in helped.stdout
    bogus = ssh_server.ssh("bogus")
    assert bogus.returncode == 1
    assert "Usage:" in bogus.stderr and "No such command" in bogus.stderr


def test_host_only_commands_are_refused(ssh_server: SSHTarget) -> None:
    # The engine runs containers as root and up/down/... are the platform's own processes:
    # the host's operator runs them, never an SSH client. They are unknown commands over SSH.
    for command in ("engine ps", "engine run busybox true", "down", "worker", "redis",
                    "ssh-keys:add eve /etc/shadow", "ssh-keys:remove alice"):
        done = ssh_server.ssh(command)
        assert done.returncode == 1, command
        assert f"No such command {command.split()[0]!r}" in done.stderr, command
        assert "apps:list" in done.stderr and done.stdout == "", command  # the help, on stderr
    assert ssh_server.ssh("ssh-keys:list").stdout.startswith("alice SHA256:")  # still there


def test_help_lists_no_host_only_command(ssh_server: SSHTarget) -> None:
    # (`ssh HOST --help` is the client's own option: the door's test of "--help" is below.)
    done = ssh_server.ssh("help")
    assert done.returncode == 0
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert {"apps:list", "config:set", "help", "version"} <= listed
    assert not listed & HOST_ONLY


def test_options_in_place_of_a_command_are_refused(settings: Settings, store: Store) -> None:
    for command in ("--help", "-h", "--version"):  # an ssh client takes these as its own
        p = session.plan(settings, store, command, "alice")
        assert p.refused == command and p.argv[-1] == "help"


def test_shell_metacharacters_are_just_characters(
    ssh_server: SSHTarget, paas_home: Path
) -> None:
    marker = paas_home / "pwned"
    for command in (f"apps:list; touch {marker}", f"$(touch {marker})", f"`touch {marker}`",
                    f"apps:create \"$(touch {marker})\"", f"apps:list && touch {marker}"):
        done = ssh_server.ssh(command)
        assert done.returncode != 0, command
    assert not marker.exists()


def test_shell_request_gets_usage(ssh_server: SSHTarget) -> None:
    argv = ssh_server.ssh_argv()
    done = subprocess.run([argv[0], "-T", *argv[1:]], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 1
    assert "Usage: git push" in done.stderr


def test_invalid_app_name_in_push_creates_nothing(
    ssh_server: SSHTarget, settings: Settings, store: Store, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work", {"README": "hi\n"})
    for path in ("Bad_Name", "../etc", "a/b"):
        done = subprocess.run(
            ["git", "push", ssh_server.url(path), "main"], cwd=work, env=ssh_server.git_env,
            capture_output=True, text=True, timeout=30,
        )
        assert done.returncode != 0
        assert "invalid app name" in done.stderr, done.stderr
    assert store.list_apps() == []
    assert not settings.repos_dir.exists() or list(settings.repos_dir.iterdir()) == []


def test_fetch_of_unknown_app_is_refused(ssh_server: SSHTarget) -> None:
    done = ssh_server.ssh("git-upload-pack", "'nope'")
    assert done.returncode == 1
    assert "does not exist" in done.stderr


def test_many_concurrent_sessions(ssh_server: SSHTarget) -> None:
    # Half of them on a pty (`-tt`): each gets a terminal of its own.
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda n: ssh_server.ssh(*["-tt"][:n % 2], "apps:list"),
                                range(24)))
    assert [r.returncode for r in results] == [0] * 24
    assert all(r.stdout.startswith("=====> My Apps") for r in results)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_client_leaving_mid_command_kills_the_subprocess(ssh_server: SSHTarget) -> None:
    # git-receive-pack advertises its refs, then waits for the client: a command in flight.
    client = subprocess.Popen(
        ssh_server.ssh_argv("git-receive-pack 'waiting'"), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert client.stdout is not None
    assert client.stdout.read(4)  # the advertisement arrived: the subprocess runs
    assert _children(ssh_server.pid), "expected git-receive-pack under the server"
    os.kill(client.pid, 9)
    client.wait()
    deadline = time.monotonic() + 10
    while _children(ssh_server.pid):
        assert time.monotonic() < deadline, "the subprocess outlived its client"
        time.sleep(0.1)
    assert ssh_server.ssh("apps:list").returncode == 0  # and the server still serves


def test_host_key_is_created_once_with_mode_0600(settings: Settings) -> None:
    first = load_host_key(settings.host_key_path)
    second = load_host_key(settings.host_key_path)
    assert fingerprint(first.asbytes()) == fingerprint(second.asbytes())
    assert stat.S_IMODE(settings.host_key_path.stat().st_mode) == 0o600


def test_keypair_fixture_matches_store(keypair: KeyPair, store: Store) -> None:
    assert [k.name for k in store.list_keys()] == [keypair.name]


# -- `ssh -t`: the command on a pty -------------------------------------------------------

# What a command sees of its terminal; then a window change (SIGWINCH), then a typed line.
PROBE = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGWINCH])
def size():
    columns, rows = os.get_terminal_size(0)
    return f"{rows}x{columns}"
ctty = os.open("/dev/tty", os.O_RDWR)  # fails without a controlling terminal
import termios
print("isatty", os.isatty(0), os.isatty(1), os.isatty(2), "TERM", os.environ.get("TERM"),
      "size", size(), "foreground", os.tcgetpgrp(ctty) == os.getpgrp(),
      "erase", termios.tcgetattr(0)[6][termios.VERASE].hex(), "ready", flush=True)
got = signal.sigtimedwait([signal.SIGWINCH], 20)
print("winch", got is not None, "size", size(), flush=True)
print("typed", input().strip(), flush=True)
sys.exit(3)
"""
ORPHANER = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
print("bye", flush=True)
sys.exit(7)
"""
FLOOD = r"""
import sys
import termios
for n in range(40000):
    sys.stdout.write(f"out {n:08d}\n")
    if n % 4 == 0:
        sys.stderr.write(f"err {n:08d}\n")
sys.exit(3)
"""
SLEEPER = r"""
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def probe_server(settings: Settings, keypair: KeyPair) -> Iterator[SSHTarget]:
    """The real SSH server, in this process, where `probe`, `sleeper FILE` and `orphaner FILE`
    run PROBE, SLEEPER and ORPHANER instead of a paas command: the plumbing is what is tested."""
    probes = {"probe": PROBE, "sleeper": SLEEPER, "orphaner": ORPHANER, "flood": FLOOD}

    def planner(settings: Settings, store: Store, command: str, user: str) -> session.Plan:
        words = command.split()
        if words[0] in probes:
            return session.Plan([sys.executable, "-c", probes[words[0]], *words[1:]],
                                settings.home)
        return session.plan(settings, store, command, user)

    server = SSHServer(settings, "127.0.0.1", planner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SSHTarget(settings.ssh_port, keypair, os.getpid())
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_pty_request_gives_the_command_a_terminal(probe_server: SSHTarget) -> None:
    client = ClientTerminal(probe_server.ssh_argv("-t", "probe"), rows=24, columns=80,
                            erase=b"\x08")
    try:
        seen = client.read_until(b"ready")
        assert b"isatty True True True" in seen
        assert b"size 24x80 foreground True erase 08" in seen  # the client's modes too
        assert b"TERM " + os.environ.get("TERM", "xterm").encode() in seen or b"TERM xterm" in seen
        resize_terminal(client.master, 40, 120)  # the client hears SIGWINCH and sends window-change
        assert b"winch True size 40x120" in client.read_until(b"winch")
        os.write(client.master, b"hello there\r")
        assert b"typed hello there" in client.read_until(b"typed")
        assert client.proc.wait(timeout=20) == 3  # the command's exit status, through ssh
    finally:
        client.close()


def test_pty_session_killed_when_the_client_leaves(probe_server: SSHTarget, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    client = ClientTerminal(probe_server.ssh_argv("-t", f"sleeper {pid_file}"), 24, 80)
    try:
        client.read_until(b"ready")
        pid = int(pid_file.read_text())
        os.kill(client.proc.pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=15, what="sleeper gone")
    finally:
        client.close()
    assert probe_server.ssh("apps:list").returncode == 0  # the server still serves


def test_cli_over_a_pty_keeps_exit_status(ssh_server: SSHTarget, store: Store) -> None:
    # `ssh -tt` without a terminal of ours: a pty of no known size on the server's side.
    store.create_app("shop")

    def tty_ssh(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(ssh_server.ssh_argv("-tt", *command), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=60)

    done = tty_ssh("apps:list")
    assert done.returncode == 0, done.stdout
    assert done.stdout == b"=====> My Apps\r\nshop\r\n"  # a terminal's CR LF
    missing = tty_ssh("config:get", "nope", "KEY")
    assert missing.returncode == 1
    assert b"does not exist" in missing.stdout  # one stream on a terminal, as with OpenSSH


def test_a_child_left_holding_the_output_does_not_hang_the_session(
    probe_server: SSHTarget, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    done = probe_server.ssh(f"orphaner {pid_file}")
    assert (done.returncode, done.stdout) == (7, "bye\n")
    pid = int(pid_file.read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z",
               timeout=15, what="the orphan killed")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_all_output_arrives_before_the_exit_status(probe_server: SSHTarget) -> None:
    done = subprocess.run(probe_server.ssh_argv("flood"), capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 3
    assert done.stdout == b"".join(b"out %08d\n" % n for n in range(40000))
    assert done.stderr == b"".join(b"err %08d\n" % n for n in range(0, 40000, 4))
    on_tty = subprocess.run(probe_server.ssh_argv("-tt", "flood"), capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert on_tty.returncode == 3
    lines = on_tty.stdout.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) - 1 == 40000 + 10000  # one stream, nothing lost
    assert [x for x in lines if x.startswith(b"out")][-1] == b"out 00039999"


def test_terminal_modes_are_parsed_as_rfc_4254_says() -> None:
    encoded = bytes([3]) + (8).to_bytes(4, "big") + bytes([53]) + (0).to_bytes(4, "big") \
        + bytes([1]) + (255).to_bytes(4, "big") + bytes([128]) + (38400).to_bytes(4, "big")
    assert pty.parse_modes(encoded + b"\0") == {3: 8, 53: 0, 1: 255, 128: 38400}
    assert pty.parse_modes(encoded[:7]) == {3: 8}  # a truncated one is left out
    assert pty.parse_modes(bytes([160, 1, 2]) + encoded) == {}  # an unknown opcode ends it
    terminal = pty.Terminal("vt100", 80, 24, encoded)
    master, slave = terminal.open()
    try:
        attrs = termios.tcgetattr(slave)
        assert attrs[6][termios.VERASE] == b"\x08" and attrs[6][termios.VINTR] == b"\x00"
        assert not attrs[3] & termios.ECHO
    finally:
        os.close(slave)
        terminal.close()
