"""The store's per-app state on a real SQLite file: config, formation, properties, domains, ACL,
release snapshots, and rename/destroy carrying or removing all of it."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from paas.core.models import Limits, ReleaseKind, ReleaseStatus
from paas.errors import (
    AppExistsError,
    AppNotFoundError,
    ConfigInvalidError,
    DomainExistsError,
    NameInvalidError,
    PaasError,
    ReleaseNotFoundError,
)
from paas.store import Store

ODD = "spaces  'quotes' \"dq\" a=b\nnewline ✓ $(x) `y`"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "paas.db")
    s.create_app("shop", member="bob")
    return s


def test_config_set_unset_replace(store: Store) -> None:
    assert store.get_config("shop") == {}
    assert store.update_config("shop", {"B": "2", "A": ODD}) == {"A": ODD, "B": "2"}
    assert store.update_config("shop", {"C": ""}, ["B", "NOT_SET"]) == {"A": ODD, "C": ""}
    store.replace_config("shop", {"Z": "1"})
    assert store.get_config("shop") == {"Z": "1"}


@pytest.mark.parametrize("key", ["1A", "A-B", "", "A B", "É", "x" * 256])
def test_config_keys_are_validated_before_anything_changes(store: Store, key: str) -> None:
    with pytest.raises(ConfigInvalidError):
        store.update_config("shop", {"GOOD": "1", key: "v"})
    with pytest.raises(ConfigInvalidError):
        store.update_config("shop", {}, [key])
    assert store.get_config("shop") == {}


def test_config_refuses_nul_and_unknown_apps(store: Store) -> None:
    with pytest.raises(ConfigInvalidError, match="NUL"):
        store.update_config("shop", {"A": "x\0y"})
    with pytest.raises(AppNotFoundError):
        store.update_config("nope", {"A": "1"})
    with pytest.raises(AppNotFoundError):
        store.get_config("nope")


def test_formation(store: Store) -> None:
    assert store.get_formation("shop") == {}
    assert store.set_formation("shop", {"web": 2, "worker": 1}) == {"web": 2, "worker": 1}
    assert store.set_formation("shop", {"worker": 0}) == {"web": 2, "worker": 0}
    with pytest.raises(PaasError, match="negative"):
        store.set_formation("shop", {"web": -1})
    with pytest.raises(NameInvalidError):
        store.set_formation("shop", {"Web_1": 1})
    assert store.get_formation("shop") == {"web": 2, "worker": 0}


def test_properties_are_per_namespace_and_none_removes(store: Store) -> None:
    store.set_prop("shop", "checks", "wait", "5")
    store.set_prop("shop", "checks", "wait", "7")
    store.set_prop("shop", "builder", "selected", "buildpack")
    assert store.get_props("shop", "checks") == {"wait": "7"}
    assert store.get_props("shop", "builder") == {"selected": "buildpack"}
    store.set_prop("shop", "checks", "wait", None)
    store.set_prop("shop", "checks", "never-set", None)
    assert store.get_props("shop", "checks") == {}
    with pytest.raises(AppNotFoundError):
        store.set_prop("nope", "checks", "wait", "1")


def test_domains_belong_to_one_app(store: Store) -> None:
    store.create_app("blog")
    store.add_domain("shop", "www.shop.example")
    store.add_domain("shop", "a.shop.example")
    assert store.list_domains("shop") == ["a.shop.example", "www.shop.example"]
    with pytest.raises(DomainExistsError, match="'shop'"):
        store.add_domain("blog", "www.shop.example")
    assert store.remove_domain("shop", "a.shop.example") is True
    assert store.remove_domain("blog", "www.shop.example") is False
    assert store.list_domains("shop") == ["www.shop.example"]


def test_acl_and_membership(store: Store) -> None:
    store.create_app("blog")
    assert store.acl_list("shop") == ["bob"] and store.acl_list("blog") == []
    assert store.acl_add("blog", "bob") is True
    assert store.acl_add("blog", "bob") is False
    assert store.apps_of("bob") == ["blog", "shop"]
    assert store.is_member("shop", "bob") and not store.is_member("shop", "eve")
    assert store.acl_remove("blog", "bob") is True
    assert store.acl_remove("blog", "bob") is False
    assert store.apps_of("bob") == ["shop"]


def test_releases_snapshot_config_formation_limits(store: Store) -> None:
    limits = {"_default_": Limits(256 << 20, None), "web": Limits(None, 0.5)}
    first = store.add_release("shop", "img:1", {"web": "python app.py"}, "abc", "push",
                              config={"A": ODD}, formation={"web": 2}, limits=limits, user="bob")
    second = store.add_release("shop", "img:1", {"web": "python app.py"}, "abc", "config",
                               kind=ReleaseKind.CONFIG)
    assert (first.version, second.version) == (1, 2)
    got = store.get_release("shop", 1)
    assert got == first
    assert got.config == {"A": ODD} and got.formation == {"web": 2} and got.user == "bob"
    assert got.limits_of("web") == Limits(None, 0.5)
    assert got.limits_of("worker") == Limits(256 << 20, None)
    assert got.count("web") == 2 and got.count("worker") == 0
    assert store.current_release("shop") is None
    store.finish_release("shop", 1, ReleaseStatus.SUCCEEDED)
    store.finish_release("shop", 2, ReleaseStatus.FAILED, "crashed")
    assert store.current_release("shop") == store.get_release("shop", 1)
    assert [r.version for r in store.list_releases("shop")] == [2, 1]
    assert [r.version for r in store.list_releases("shop", limit=1)] == [2]
    assert store.get_release("shop", 2).reason == "crashed"
    assert store.get_release("shop", 2).kind is ReleaseKind.CONFIG
    with pytest.raises(ReleaseNotFoundError):
        store.get_release("shop", 3)


def test_rename_carries_everything(store: Store) -> None:
    _fill(store, "shop")
    store.create_app("blog")
    with pytest.raises(AppExistsError):
        store.rename_app("shop", "blog")
    with pytest.raises(NameInvalidError):
        store.rename_app("shop", "Bad")
    store.rename_app("shop", "store")
    with pytest.raises(AppNotFoundError):
        store.get_app("shop")
    assert store.get_config("store") == {"A": "1"}
    assert store.get_formation("store") == {"web": 1}
    assert store.get_props("store", "checks") == {"wait": "1"}
    assert store.list_domains("store") == ["shop.example"]
    assert store.acl_list("store") == ["bob"] and store.apps_of("bob") == ["store"]
    assert [r.app for r in store.list_releases("store")] == ["store"]


def test_destroy_forgets_everything(store: Store, tmp_path: Path) -> None:
    _fill(store, "shop")
    store.destroy_app("shop")
    with pytest.raises(AppNotFoundError):
        store.destroy_app("shop")
    conn = sqlite3.connect(tmp_path / "paas.db")
    for table in ("releases", "config", "formation", "props", "domains", "acl"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table
    conn.close()
    # The name and the domain are free again.
    store.create_app("shop")
    store.add_domain("shop", "shop.example")


def test_keys_by_name(store: Store, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    store.add_key("bob", (tmp_path / "k.pub").read_text(), admin=True)
    key = store.key_by_name("bob")
    assert key is not None and key.admin and key.name == "bob"
    assert store.key_by_name("eve") is None


def test_an_old_database_gains_the_new_release_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE apps (name TEXT PRIMARY KEY, created_at REAL NOT NULL);"
        "CREATE TABLE releases (app TEXT NOT NULL, version INTEGER NOT NULL, image TEXT NOT NULL,"
        " processes TEXT NOT NULL, git_sha TEXT NOT NULL DEFAULT '', description TEXT NOT NULL"
        " DEFAULT '', status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created_at REAL"
        " NOT NULL, PRIMARY KEY (app, version));"
        "INSERT INTO apps VALUES ('shop', 1.0);"
        "INSERT INTO releases VALUES ('shop', 1, 'img', '{\"web\": \"x\"}', 'abc', 'd',"
        " 'succeeded', '', 2.0);"
    )
    conn.commit()
    conn.close()
    release = Store(path).get_release("shop", 1)
    assert release.processes == {"web": "x"} and release.status is ReleaseStatus.SUCCEEDED
    assert (release.config, release.formation, release.limits) == ({}, {}, {})
    assert release.kind is ReleaseKind.DEPLOY and release.user == ""


def test_concurrent_writers_lose_no_update(store: Store) -> None:
    def write(prefix: str) -> None:
        for i in range(20):
            store.update_config("shop", {f"{prefix}{i}": str(i)})

    threads = [threading.Thread(target=write, args=(p,)) for p in ("A", "B", "C")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.get_config("shop")) == 60


def _fill(store: Store, app: str) -> None:
    store.update_config(app, {"A": "1"})
    store.set_formation(app, {"web": 1})
    store.set_prop(app, "checks", "wait", "1")
    store.add_domain(app, "shop.example")
    store.add_release(app, "img", {"web": "x"}, "", "push")
