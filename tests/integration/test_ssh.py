"""The SSH server with the real OpenSSH client: auth, command dispatch, safety, concurrency."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from testkit import KeyPair, SSHTarget, make_keypair, make_repo

from paas.config import Settings
from paas.core.keys import fingerprint
from paas.errors import UsageError
from paas.ssh import session
from paas.ssh.server import load_host_key
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
    # the host's operator runs them, never an SSH client.
    for command in ("engine ps", "engine run busybox true", "down", "worker", "redis",
                    "ssh-keys:add eve /etc/shadow", "ssh-keys:remove alice"):
        done = ssh_server.ssh(command)
        assert done.returncode == 1, command
        assert f"unknown command {command.split()[0]!r} (try: help)" in done.stderr, command
    assert ssh_server.ssh("ssh-keys:list").stdout.startswith("alice SHA256:")  # still there


def test_options_in_place_of_a_command_are_refused(settings: Settings, store: Store) -> None:
    for command in ("--help", "-h", "--version"):  # an ssh client takes these as its own
        with pytest.raises(UsageError, match="unknown command"):
            session.plan(settings, store, command, "alice")


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
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda _: ssh_server.ssh("apps:list"), range(24)))
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
