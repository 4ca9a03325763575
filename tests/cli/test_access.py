"""Who may run what: admin keys everything; other keys the apps they created or were added to;
the rest is "permission denied" on stderr, exit 1, and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import Paas

from paas.store import Store


@pytest.fixture
def paas(paas_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Paas:
    return Paas(paas_home, store, monkeypatch, capsys)


@pytest.fixture
def team(paas: Paas) -> Paas:
    """Keys: root (admin), bob and eve (plain); bob created `shop`, the operator made `ops`."""
    paas.add_key("root", admin=True)
    paas.add_key("bob")
    paas.add_key("eve")
    assert paas("apps:create", "shop", user="bob").code == 0
    assert paas("apps:create", "ops").code == 0
    assert paas("config:set", "--no-restart", "shop", "SECRET=s3cret", user="bob").code == 0
    return paas


def snapshot(team: Paas) -> dict[str, object]:
    store = team.store
    return {
        app.name: (store.get_config(app.name), store.list_domains(app.name), store.acl_list(app.name),
                   store.get_props(app.name, "checks"), store.get_props(app.name, "builder"),
                   store.get_props(app.name, "resource"))
        for app in store.list_apps()
    }


# Every command that names an app, as eve (not a member of shop) would run it.
DENIED = [
    ["apps:info", "shop"], ["apps:destroy", "shop", "--force"], ["apps:rename", "shop", "mine"],
    ["config", "shop"], ["config:show", "shop"], ["config:get", "shop", "SECRET"],
    ["config:set", "--no-restart", "shop", "SECRET=stolen"], ["config:unset", "shop", "SECRET"],
    ["domains:add", "shop", "evil.example"], ["domains:remove", "shop", "shop.example"],
    ["domains:list", "shop"], ["checks:set", "shop", "wait", "9"], ["checks:disable", "shop"],
    ["checks:enable", "shop"], ["checks:report", "shop"],
    ["resource:limit", "shop"], ["resource:limit", "shop", "--memory", "64m"],
    ["resource:limit-clear", "shop"], ["builder:set", "shop", "selected", "dockerfile"],
    ["acl:list", "shop"], ["acl:add", "shop", "eve"], ["acl:remove", "shop", "bob"],
]


@pytest.mark.parametrize("argv", DENIED, ids=lambda argv: argv[0])
def test_a_stranger_is_denied_and_nothing_changes(team: Paas, argv: list[str]) -> None:
    before = snapshot(team)
    result = team(*argv, user="eve", stdin="shop\n")
    assert result.code == 1
    assert "permission denied" in result.err
    assert "s3cret" not in result.out + result.err
    assert snapshot(team) == before


def test_a_key_sees_only_its_apps(team: Paas) -> None:
    assert json.loads(team("apps:list", "--format", "json", user="bob").out) == ["shop"]
    assert json.loads(team("apps:list", "--format", "json", user="eve").out) == []
    assert json.loads(team("apps:list", "--format", "json", user="root").out) == ["ops", "shop"]
    assert json.loads(team("apps:list", "--format", "json").out) == ["ops", "shop"]
    # A name that is no (longer a) key: a plain user with no apps.
    assert json.loads(team("apps:list", "--format", "json", user="ghost").out) == []
    assert team("config", "shop", user="ghost").code == 1


def test_a_member_manages_its_app_but_not_its_acl(team: Paas) -> None:
    assert team("config:get", "shop", "SECRET", user="bob").out == "s3cret\n"
    assert team("domains:add", "shop", "shop.example", user="bob").code == 0
    assert team("checks:set", "shop", "wait", "1", user="bob").code == 0
    assert json.loads(team("acl:list", "shop", "--format", "json", user="bob").out) == ["bob"]
    denied = team("acl:add", "shop", "eve", user="bob")
    assert denied.code == 1 and "permission denied: only an admin" in denied.err
    assert team("config", "ops", user="bob").code == 1


def test_acl_add_and_remove_by_an_admin(team: Paas) -> None:
    added = team("acl:add", "shop", "eve", user="root")
    assert added.code == 0 and "Added eve" in added.out
    assert team("config:get", "shop", "SECRET", user="eve").out == "s3cret\n"
    assert "already" in team("acl:add", "shop", "eve").out
    assert json.loads(team("acl:list", "shop", "--format", "json").out) == ["bob", "eve"]
    assert team("acl:list", "shop").out == "=====> shop ACL\nbob\neve\n"
    assert team("acl:remove", "shop", "eve", user="root").code == 0
    assert team("config:get", "shop", "SECRET", user="eve").code == 1
    not_member = team("acl:remove", "shop", "eve")
    assert not_member.code == 1 and "not in the ACL" in not_member.err
    unknown = team("acl:add", "shop", "nobody")
    assert unknown.code == 1 and "no key named 'nobody'" in unknown.err
    assert team.store.acl_list("shop") == ["bob"]
    assert team("acl:add", "nope", "eve").code == 1


def test_ssh_keys_list_is_for_admins(team: Paas) -> None:
    denied = team("ssh-keys:list", user="bob")
    assert denied.code == 1 and "permission denied" in denied.err and "root" not in denied.out
    keys = json.loads(team("ssh-keys:list", "--format", "json", user="root").out)
    assert [(k["name"], k["admin"]) for k in keys] == [("bob", False), ("eve", False), ("root", True)]
    assert all(k["fingerprint"].startswith("SHA256:") for k in keys)
    text = team("ssh-keys:list").out.splitlines()
    assert text[2].startswith("root SHA256:") and text[2].endswith("(admin)")


def test_a_created_app_makes_its_creator_a_member(team: Paas) -> None:
    assert team("apps:create", "blog", user="eve").code == 0
    assert team.store.acl_list("blog") == ["eve"]
    assert team("config:set", "--no-restart", "blog", "A=1", user="eve").code == 0
    assert team("config", "blog", user="bob").code == 1
    assert team.store.acl_list("ops") == []
