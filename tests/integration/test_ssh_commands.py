"""The CLI's commands over the real SSH server and OpenSSH client: who may do what (admin,
member, stranger), exact values, injection attempts, exit codes, git push and fetch rights."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from testkit import KeyPair, SSHTarget, git, make_keypair, make_repo

from paas.config import Settings
from paas.store import Store

ODD_VALUES = {
    "SPACES": "two  spaces and a tab\there",
    "QUOTES": "it's \"quoted\" `twice`",
    "EQUALS": "a=b==c=",
    "NEWLINES": "line one\nline two\n\nlast",
    "UNICODE": "ünïcødé ☃ 日本語",
    "EDGES": "  leading and trailing  ",
    "SHELLISH": "$HOME ${PATH} \\backslash * ? ~ | & ; < >",
    "EMPTY": "",
}


def run(ssh: SSHTarget, *words: str, key: KeyPair | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """`ssh ... WORDS` as a user types it, each word quoted for the server's shlex split."""
    argv = ssh.ssh_argv(shlex.join(words), key=key.private if key else None)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          input=stdin if stdin is not None else "")


@pytest.fixture
def bob(paas_home: Path, store: Store) -> KeyPair:
    """A key that is no admin; member of what it creates or is granted."""
    pair = make_keypair(paas_home / "client-keys", "bob")
    store.add_key(pair.name, pair.public.read_text())
    return pair


@pytest.fixture
def carol(paas_home: Path, store: Store) -> KeyPair:
    """A known key that is no admin and member of nothing: the stranger."""
    pair = make_keypair(paas_home / "client-keys", "carol")
    store.add_key(pair.name, pair.public.read_text())
    return pair


def test_odd_config_values_round_trip_exactly(ssh_server: SSHTarget, store: Store) -> None:
    store.create_app("shop")
    pairs = [f"{k}={v}" for k, v in ODD_VALUES.items()]
    done = run(ssh_server, "config:set", "--no-restart", "shop", *pairs)
    assert done.returncode == 0, done.stderr
    assert store.get_config("shop") == ODD_VALUES
    for key, value in ODD_VALUES.items():
        got = run(ssh_server, "config:get", "shop", key)
        assert got.returncode == 0, got.stderr
        assert got.stdout == value + "\n", key
    listed = run(ssh_server, "config", "shop", "--format", "json")
    assert json.loads(listed.stdout) == ODD_VALUES


def test_injection_attempts_are_stored_literally(
    ssh_server: SSHTarget, store: Store, paas_home: Path
) -> None:
    store.create_app("shop")
    marker = paas_home / "pwned"
    values = {"SUB": f"$(touch {marker})", "TICKS": f"`touch {marker}`",
              "SEMI": f"x; touch {marker}", "AND": f"x && touch {marker}",
              "PIPE": f"x | touch {marker}"}
    done = run(ssh_server, "config:set", "--no-restart", "shop",
               *[f"{k}={v}" for k, v in values.items()])
    assert done.returncode == 0, done.stderr
    assert store.get_config("shop") == values
    assert run(ssh_server, "config:get", "shop", "SUB").stdout == values["SUB"] + "\n"
    # Typed without quotes (no spaces: ${IFS} is a shell's), nothing runs either.
    typed = {"A": f"$(touch${{IFS}}{marker})", "B": f"1;touch${{IFS}}{marker}",
             "C": f"`touch${{IFS}}{marker}`", "D": f"1&&touch${{IFS}}{marker}"}
    line = "config:set --no-restart shop " + " ".join(f"{k}={v}" for k, v in typed.items())
    assert ssh_server.ssh(line).returncode == 0
    assert not marker.exists()
    assert store.get_config("shop") == {**values, **typed}


def test_unknown_command_and_wrong_arguments(ssh_server: SSHTarget, store: Store) -> None:
    store.create_app("shop")
    unknown = run(ssh_server, "apps:frobnicate", "shop")
    assert unknown.returncode == 1
    assert "No such command" in unknown.stderr and "config:set" in unknown.stderr  # the help
    for words in (("config:get",), ("config:get", "shop"), ("apps:create",),
                  ("config:set", "shop", "--bogus-flag", "A=1")):
        wrong = run(ssh_server, *words)
        assert wrong.returncode == 2, (words, wrong.stderr)
        assert f"Usage: paas {words[0]}" in wrong.stderr, words
    assert store.get_config("shop") == {}


def test_member_may_and_stranger_may_not(
    ssh_server: SSHTarget, store: Store, bob: KeyPair, carol: KeyPair
) -> None:
    assert run(ssh_server, "apps:create", "shop", key=bob).returncode == 0  # bob: a member
    assert store.is_member("shop", "bob")
    assert run(ssh_server, "config:set", "--no-restart", "shop", "A=1", key=bob).returncode == 0
    attempts = [("config:set", "--no-restart", "shop", "A=2"), ("config:unset", "--no-restart",
                "shop", "A"), ("config:get", "shop", "A"), ("config", "shop"),
                ("apps:info", "shop"), ("apps:rename", "shop", "mine"),
                ("apps:destroy", "shop", "--force"), ("domains:add", "shop", "shop.example.com"),
                ("checks:set", "shop", "wait", "9"), ("builder:set", "shop", "selected",
                "dockerfile"), ("resource:limit", "shop", "--memory", "64m"),
                ("acl:add", "shop", "carol"), ("acl:list", "shop"), ("releases", "shop"),
                ("ps", "shop"), ("ps:scale", "shop", "web=3"), ("logs", "shop"),
                ("run", "shop", "true")]
    for words in attempts:
        denied = run(ssh_server, *words, key=carol)
        assert denied.returncode == 1, words
        assert "permission denied" in denied.stderr, (words, denied.stderr)
    assert run(ssh_server, "apps:list", key=carol).stdout.splitlines()[1:] == []
    assert store.get_config("shop") == {"A": "1"}
    assert store.list_domains("shop") == []
    assert all(store.get_props("shop", ns) == {} for ns in ("checks", "builder", "resource"))
    assert store.acl_list("shop") == ["bob"]
    assert [a.name for a in store.list_apps()] == ["shop"]


def test_only_an_admin_grants_and_keys_are_admin_only(
    ssh_server: SSHTarget, store: Store, bob: KeyPair, carol: KeyPair
) -> None:
    assert run(ssh_server, "apps:create", "shop", key=bob).returncode == 0
    denied = run(ssh_server, "acl:add", "shop", "carol", key=bob)  # a member, but no admin
    assert denied.returncode == 1 and "permission denied" in denied.stderr
    assert run(ssh_server, "ssh-keys:list", key=bob).returncode == 1
    assert run(ssh_server, "acl:add", "shop", "carol").returncode == 0  # alice: the admin
    assert run(ssh_server, "config:set", "--no-restart", "shop", "C=3", key=carol).returncode == 0
    assert run(ssh_server, "apps:list", key=carol).stdout.splitlines()[1:] == ["shop"]
    assert run(ssh_server, "acl:remove", "shop", "carol").returncode == 0
    assert run(ssh_server, "config:get", "shop", "C", key=carol).returncode == 1
    assert store.get_config("shop") == {"C": "3"}


def _push(ssh: SSHTarget, work: Path, app: str, key: KeyPair) -> subprocess.CompletedProcess:
    # A branch that is stored but not deployed: the door's rights are what is tested here.
    env = {**ssh.git_env, "GIT_SSH_COMMAND": ssh.git_env["GIT_SSH_COMMAND"].replace(
        str(ssh.key.private), str(key.private))}
    return subprocess.run(["git", "push", ssh.url(app), "main:feature"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def _clone(ssh: SSHTarget, app: str, dest: Path, key: KeyPair) -> subprocess.CompletedProcess:
    env = {**ssh.git_env, "GIT_SSH_COMMAND": ssh.git_env["GIT_SSH_COMMAND"].replace(
        str(ssh.key.private), str(key.private))}
    return subprocess.run(["git", "clone", "-q", "-b", "feature", ssh.url(app), str(dest)],
                          env=env, capture_output=True, text=True, timeout=60)


def _refs(settings: Settings, app: str) -> str:
    return git(settings.repos_dir / f"{app}.git", "for-each-ref").stdout


def test_git_push_and_fetch_need_membership(
    ssh_server: SSHTarget, settings: Settings, store: Store, bob: KeyPair, carol: KeyPair,
    tmp_path: Path,
) -> None:
    work = make_repo(tmp_path / "work", {"README": "hi\n"})
    pushed = _push(ssh_server, work, "bobs", bob)  # a new name: created, bob its member
    assert pushed.returncode == 0, pushed.stderr
    assert store.is_member("bobs", "bob") and "feature" in _refs(settings, "bobs")
    before = _refs(settings, "bobs")
    git(work, "commit", "-q", "--allow-empty", "-m", "carol's")
    denied = _push(ssh_server, work, "bobs", carol)
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr, denied.stderr
    assert _refs(settings, "bobs") == before and not store.is_member("bobs", "carol")
    refused = _clone(ssh_server, "bobs", tmp_path / "carols-clone", carol)
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    assert _clone(ssh_server, "bobs", tmp_path / "bobs-clone", bob).returncode == 0
    assert _clone(ssh_server, "bobs", tmp_path / "admins-clone", ssh_server.key).returncode == 0
    assert (tmp_path / "bobs-clone" / "README").read_text() == "hi\n"
    admin = _push(ssh_server, work, "bobs", ssh_server.key)  # an admin pushes anywhere
    assert admin.returncode == 0, admin.stderr
    assert _refs(settings, "bobs") != before


def test_app_commands_over_ssh_without_a_release(
    ssh_server: SSHTarget, settings: Settings, store: Store, bob: KeyPair
) -> None:
    """The commands that need no running app, as a member types them over SSH."""
    assert run(ssh_server, "apps:create", "shop", key=bob).returncode == 0
    steps = [("domains:add", "shop", "shop.example.com"), ("checks:set", "shop", "wait", "3"),
             ("checks:disable", "shop", "worker"), ("builder:set", "shop", "selected",
             "buildpack"), ("resource:limit", "shop", "--memory", "256m"),
             ("config:set", "--no-restart", "shop", "A=1", "B=2"),
             ("config:unset", "--no-restart", "shop", "B")]
    for words in steps:
        done = run(ssh_server, *words, key=bob)
        assert done.returncode == 0, (words, done.stderr)
    domains = json.loads(run(ssh_server, "domains:list", "shop", "--format", "json",
                             key=bob).stdout)
    assert "shop.example.com" in domains and "shop.example.com" in store.list_domains("shop")
    assert store.get_props("shop", "checks")["wait"] == "3"
    assert store.get_props("shop", "builder") == {"selected": "buildpack"}
    assert store.get_config("shop") == {"A": "1"}
    info = json.loads(run(ssh_server, "apps:info", "shop", "--format", "json", key=bob).stdout)
    assert (info["name"], info["builder"], info["members"]) == ("shop", "buildpack", ["bob"])
    assert run(ssh_server, "help", "config:set").stdout.startswith("Usage: paas config:set")
    assert run(ssh_server, "version").stdout.startswith("paas ")


def test_destroy_asks_for_the_name_through_ssh_stdin(
    ssh_server: SSHTarget, settings: Settings, store: Store, bob: KeyPair
) -> None:
    assert run(ssh_server, "apps:create", "shop", key=bob).returncode == 0
    wrong = run(ssh_server, "apps:destroy", "shop", key=bob, stdin="shops\n")
    assert wrong.returncode == 1
    assert [a.name for a in store.list_apps()] == ["shop"]
    right = run(ssh_server, "apps:destroy", "shop", key=bob, stdin="shop\n")  # `echo shop | ssh`
    assert right.returncode == 0, right.stderr
    assert store.list_apps() == []
    assert not (settings.repos_dir / "shop.git").exists()
