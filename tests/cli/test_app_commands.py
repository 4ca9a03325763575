"""apps, domains, checks, builder, resource commands and the group's help and exit codes, run
in-process over a real Store (no containers: apps here have no release)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import Paas

from paas import __version__
from paas.cli.commands import HOST_ONLY
from paas.store import Store


@pytest.fixture
def paas(paas_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Paas:
    return Paas(paas_home, store, monkeypatch, capsys)


def test_version_and_help(paas: Paas) -> None:
    assert paas("version").out == f"paas {__version__}\n"
    listing = paas("help")
    assert listing.code == 0
    for name in ("apps:create", "config:set", "domains:add", "checks:set", "resource:limit",
                 "builder:set", "acl:add", "ssh-keys:list", "engine", "up"):
        assert f"\n  {name} " in listing.out, name
    assert paas("--help").out == listing.out
    one = paas("help", "config:set")
    assert one.code == 0 and "Usage: paas config:set [OPTIONS] APP PAIRS..." in one.out


def test_help_over_ssh_hides_host_only_commands(paas: Paas) -> None:
    paas.add_key("bob")
    for argv in (["help"], ["--help"]):
        listing = paas(*argv, user="bob")
        assert listing.code == 0 and "apps:create" in listing.out
        shown = {line.split()[0] for line in listing.out.split("Commands:")[1].splitlines() if line}
        assert not shown & HOST_ONLY, shown & HOST_ONLY
    assert paas("help", "engine", user="bob").code == 1
    assert paas("help", "engine").code == 0
    refused = paas("engine", "ps", user="bob")
    assert refused.code == 1 and "No such command 'engine'" in refused.err
    assert "ssh-keys:add" not in refused.err and "apps:create" in refused.err


def test_unknown_command_prints_help_and_exits_1(paas: Paas) -> None:
    result = paas("apps:frobnicate")
    assert result.code == 1
    assert "Commands:" in result.err and "No such command 'apps:frobnicate'" in result.err


def test_wrong_arguments_print_usage_and_exit_2(paas: Paas) -> None:
    for argv in (["apps:create"], ["config:get", "x"], ["domains:add", "x"], ["apps:list", "--bogus"],
                 ["checks:set"], ["apps:list", "--format", "yaml"]):
        result = paas(*argv)
        assert result.code == 2, argv
        assert "Usage: paas" in result.err or "No such option" in result.err, argv


def test_create_list_and_info(paas: Paas) -> None:
    assert paas("apps:create", "shop").out == "-----> Creating shop... done\n"
    assert (paas.home / "repos" / "shop.git" / "HEAD").exists()
    paas("apps:create", "blog")
    assert paas("apps:list").out == "=====> My Apps\nblog\nshop\n"
    assert json.loads(paas("apps:list", "--format", "json").out) == ["blog", "shop"]
    again = paas("apps:create", "shop")
    assert again.code == 1 and "already exists" in again.err
    bad = paas("apps:create", "Bad_Name")
    assert bad.code == 1 and "invalid app name" in bad.err
    info = json.loads(paas("apps:info", "shop", "--format", "json").out)
    assert info["name"] == "shop" and info["release"] is None and info["builder"] == "detect"
    assert info["domains"] == ["shop.localhost"] and info["url"].startswith("http://shop.localhost")
    text = paas("apps:info", "shop").out
    assert text.startswith("=====> shop app information\n") and "Release:    none" in text


def test_unknown_app_is_an_error_everywhere(paas: Paas) -> None:
    for argv in (["apps:info", "nope"], ["config", "nope"], ["config:get", "nope", "A"],
                 ["config:set", "nope", "A=1"], ["domains:list", "nope"], ["checks:set", "nope", "wait", "1"],
                 ["builder:set", "nope", "selected", "buildpack"], ["resource:limit", "nope"],
                 ["acl:list", "nope"], ["apps:destroy", "nope", "--force"], ["apps:rename", "nope", "x"]):
        result = paas(*argv)
        assert result.code == 1, argv
        assert "app 'nope' does not exist" in result.err, argv


def test_destroy_asks_for_the_name_and_a_wrong_answer_changes_nothing(paas: Paas) -> None:
    paas("apps:create", "shop")
    for answer in ("", "sho\n", "blog\n"):
        result = paas("apps:destroy", "shop", stdin=answer)
        assert result.code == 1
        assert 'To proceed, type "shop"' in result.err and "did not match" in result.err
    assert [a.name for a in paas.store.list_apps()] == ["shop"]


def test_rename_refuses_a_taken_or_invalid_name(paas: Paas) -> None:
    paas("apps:create", "shop")
    paas("apps:create", "blog")
    taken = paas("apps:rename", "shop", "blog")
    assert taken.code == 1 and "already exists" in taken.err
    invalid = paas("apps:rename", "shop", "No")
    assert invalid.code == 1 and "invalid app name" in invalid.err
    assert [a.name for a in paas.store.list_apps()] == ["blog", "shop"]


def test_domains(paas: Paas) -> None:
    paas("apps:create", "shop")
    paas("apps:create", "blog")
    added = paas("domains:add", "shop", "WWW.Shop.Example", "*.shop.test")
    assert added.code == 0, added.err
    assert "-----> Added www.shop.example to shop" in added.out
    assert json.loads(paas("domains:list", "shop", "--format", "json").out) == [
        "shop.localhost", "*.shop.test", "www.shop.example"]
    assert paas("domains:list", "shop").out == (
        "=====> shop domains\nshop.localhost (default)\n*.shop.test\nwww.shop.example\n")
    assert "already a domain of shop" in paas("domains:add", "shop", "www.shop.example").out
    clash = paas("domains:add", "blog", "www.shop.example")
    assert clash.code == 1 and "already a domain of app 'shop'" in clash.err
    default_of_other = paas("domains:add", "blog", "shop.localhost")
    assert default_of_other.code == 1 and "default domain of app 'shop'" in default_of_other.err
    invalid = paas("domains:add", "shop", "bad domain!")
    assert invalid.code == 1 and "invalid domain" in invalid.err
    missing = paas("domains:remove", "shop", "www.shop.example", "nope.example")
    assert missing.code == 1 and "nope.example" in missing.err
    assert paas.store.list_domains("shop") == ["*.shop.test", "www.shop.example"]
    assert paas("domains:remove", "shop", "www.shop.example").code == 0
    assert paas.store.list_domains("shop") == ["*.shop.test"]
    assert paas.store.list_domains("blog") == []


def test_checks(paas: Paas) -> None:
    paas("apps:create", "shop")
    assert paas("checks:set", "shop", "wait", "5").out == "=====> Setting wait to 5 for shop\n"
    paas("checks:set", "shop", "timeout", "0.5")
    paas("checks:set", "shop", "attempts", "3")
    paas("checks:set", "shop", "wait-to-retire", "0")
    assert paas.store.get_props("shop", "checks") == {
        "wait": "5", "timeout": "0.5", "attempts": "3", "wait-to-retire": "0"}
    for key, value in (("wait", "soon"), ("wait", "-1"), ("timeout", "0"), ("attempts", "0"),
                       ("attempts", "1.5"), ("wait", "inf"), ("nap", "1")):
        result = paas("checks:set", "shop", key, value)
        assert result.code == 2, (key, value)
    paas("checks:set", "shop", "wait")
    assert "wait" not in paas.store.get_props("shop", "checks")
    paas("checks:disable", "shop", "worker,clock")
    paas("checks:disable", "shop", "web")
    assert paas.store.get_props("shop", "checks")["disabled"] == "clock,web,worker"
    paas("checks:enable", "shop", "web", "clock")
    assert paas.store.get_props("shop", "checks")["disabled"] == "worker"
    report = json.loads(paas("checks:report", "shop", "--format", "json").out)
    assert report["disabled"] == "worker" and report["timeout"] == "0.5" and report["wait"] is None
    paas("checks:disable", "shop")
    assert paas.store.get_props("shop", "checks")["disabled"] == "_all_"
    # Every type is disabled and there is no release to say which types exist.
    assert paas("checks:enable", "shop", "web").code == 1
    paas("checks:enable", "shop")
    assert "disabled" not in paas.store.get_props("shop", "checks")
    assert paas("checks:disable", "shop", "Bad_Type").code == 1


def test_builder_set(paas: Paas) -> None:
    paas("apps:create", "shop")
    assert paas("builder:set", "shop", "selected", "buildpack").code == 0
    assert paas.store.get_props("shop", "builder") == {"selected": "buildpack"}
    assert json.loads(paas("apps:info", "shop", "--format", "json").out)["builder"] == "buildpack"
    assert paas("builder:set", "shop", "selected", "herokuish").code == 2
    assert paas("builder:set", "shop", "colour", "buildpack").code == 2
    assert paas.store.get_props("shop", "builder") == {"selected": "buildpack"}
    assert paas("builder:set", "shop", "selected", "").code == 0
    assert paas.store.get_props("shop", "builder") == {}


def test_resource_limit_shows_and_validates(paas: Paas) -> None:
    paas("apps:create", "shop")
    assert paas("resource:limit", "shop").out == "=====> shop resource limits\n       none (unlimited)\n"
    paas.store.set_prop("shop", "resource", "_default_.memory", str(512 << 20))
    paas.store.set_prop("shop", "resource", "web.cpus", "1.5")
    assert json.loads(paas("resource:limit", "shop", "--format", "json").out) == {
        "_default_": {"memory_bytes": 512 << 20, "cpus": None},
        "web": {"memory_bytes": None, "cpus": 1.5},
    }
    shown = paas("resource:limit", "shop").out
    assert "_default_:   memory 512MiB, cpus unlimited" in shown and "web:" in shown
    for flags in (["--memory", "lots"], ["--memory", "1k"], ["--cpus", "many"], ["--cpus", "-1"]):
        result = paas("resource:limit", "shop", *flags)
        assert result.code == 2, flags
    assert paas("resource:limit", "shop", "--process-type", "Bad_Type", "--cpus", "1").code == 1


def test_resource_limit_stores_limits_and_zero_clears_them(paas: Paas) -> None:
    paas("apps:create", "shop")
    assert paas("resource:limit", "shop", "--memory", "256m", "--cpus", "0.5").code == 0
    assert paas("resource:limit", "shop", "--process-type", "worker", "--cpu", "2").code == 0
    shown = json.loads(paas("resource:limit", "shop", "--format", "json").out)
    assert shown == {"_default_": {"memory_bytes": 256 << 20, "cpus": 0.5},
                     "worker": {"memory_bytes": None, "cpus": 2.0}}
    assert paas("resource:limit", "shop", "--memory", "0").code == 0
    shown = json.loads(paas("resource:limit", "shop", "--format", "json").out)
    assert shown["_default_"] == {"memory_bytes": None, "cpus": 0.5}
    assert paas("resource:limit-clear", "shop", "--process-type", "worker").code == 0
    assert paas("resource:limit-clear", "shop").code == 0
    assert json.loads(paas("resource:limit", "shop", "--format", "json").out) == {}


def test_destroy_and_rename_of_an_app_without_release(paas: Paas) -> None:
    paas("apps:create", "shop")
    paas("config:set", "shop", "A=1")  # no release: stored, nothing to restart
    assert paas.store.get_config("shop") == {"A": "1"} and paas.store.list_releases("shop") == []
    paas("domains:add", "shop", "shop.example")
    renamed = paas("apps:rename", "shop", "store")
    assert renamed.code == 0, renamed.err
    assert [a.name for a in paas.store.list_apps()] == ["store"]
    assert paas.store.get_config("store") == {"A": "1"}
    assert paas.store.list_domains("store") == ["shop.example"]
    repos = paas.home / "repos"
    assert (repos / "store.git" / "HEAD").exists() and not (repos / "shop.git").exists()
    destroyed = paas("apps:destroy", "store", stdin="store\n")
    assert destroyed.code == 0, destroyed.err
    assert paas.store.list_apps() == [] and not (repos / "store.git").exists()
    # The name and its domain are free again.
    assert paas("apps:create", "store").code == 0
    assert paas("domains:add", "store", "shop.example").code == 0
