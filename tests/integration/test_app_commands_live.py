"""The app commands on a running app, in-process over the deploy rig (real engine, real nginx):
what `config:set`, `domains:add`, `resource:limit`, `apps:info` and `apps:destroy` print and
what they change in the containers and the router."""

from __future__ import annotations

import json

import pytest
from cli.clikit import Paas  # tests/ is on sys.path (the root conftest's folder)
from deploykit import CRASHY_WEB, WORKER, Rig, rig, wait_gone  # noqa: F401  (rig is a fixture)


@pytest.fixture
def paas(rig: Rig, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
         capsys: pytest.CaptureFixture[str]) -> Paas:
    return Paas(rig.settings.home, rig.store, monkeypatch, capsys, env=rig.settings.to_env())


def _running(rig: Rig, paas: Paas, app: str) -> None:  # noqa: F811
    assert paas("apps:create", app).code == 0
    assert paas("config:set", "--no-restart", app, "GREETING=hi").code == 0
    rig.push(app, {"web": CRASHY_WEB, "worker": WORKER})
    assert rig.get(app) == (200, "hi from web.1\n")


def test_config_set_restarts_and_no_restart_does_not(rig: Rig, paas: Paas) -> None:  # noqa: F811
    _running(rig, paas, "cfg")
    result = paas("config:set", "cfg", "GREETING=a b='c'")
    assert result.code == 0, result.err
    assert result.out.startswith("-----> Setting config vars\n       GREETING:  a b='c'\n")
    assert "Releasing cfg v2" in result.out
    assert rig.get("cfg") == (200, "a b='c' from web.1\n")
    quiet = paas("config:set", "--no-restart", "cfg", "GREETING=later")
    assert quiet.code == 0 and "Releasing" not in quiet.out
    assert rig.get("cfg") == (200, "a b='c' from web.1\n")
    assert [r.version for r in rig.store.list_releases("cfg")] == [2, 1]
    crash = paas("config:set", "cfg", "CRASH=1")
    assert crash.code == 1 and "crashing on purpose" in crash.err
    assert rig.get("cfg") == (200, "a b='c' from web.1\n")
    info = json.loads(paas("apps:info", "cfg", "--format", "json").out)
    assert info["release"] == "v2" and info["processes"] == {"web": 1, "worker": 0}


def test_domains_reach_the_router(rig: Rig, paas: Paas) -> None:  # noqa: F811
    _running(rig, paas, "named")
    assert rig.get("named", host="www.named.test")[0] != 200
    assert paas("domains:add", "named", "www.named.test").code == 0
    assert rig.get("named", host="www.named.test") == (200, "hi from web.1\n")
    assert paas("domains:remove", "named", "www.named.test").code == 0
    assert rig.get("named", host="www.named.test")[0] != 200
    assert rig.get("named") == (200, "hi from web.1\n")


def test_resource_limit_makes_a_release(rig: Rig, paas: Paas) -> None:  # noqa: F811
    _running(rig, paas, "lim")
    result = paas("resource:limit", "lim", "--process-type", "web", "--memory", "64m")
    assert result.code == 0, result.err
    live = rig.store.current_release("lim")
    assert live is not None and live.version == 2 and live.limits_of("web").memory_bytes == 64 << 20
    shown = json.loads(paas("resource:limit", "lim", "--format", "json").out)
    assert shown == {"web": {"memory_bytes": 64 << 20, "cpus": None}}
    assert rig.get("lim") == (200, "hi from web.1\n")


def test_destroy_with_the_typed_name_leaves_nothing(rig: Rig, paas: Paas) -> None:  # noqa: F811
    _running(rig, paas, "doomed")
    refused = paas("apps:destroy", "doomed", stdin="nope\n")
    assert refused.code == 1 and rig.get("doomed") == (200, "hi from web.1\n")
    result = paas("apps:destroy", "doomed", stdin="doomed\n")
    assert result.code == 0, result.err
    wait_gone(rig, "doomed")
    assert rig.store.list_releases("doomed") == []
    assert rig.get("doomed")[0] != 200
    assert not (rig.settings.repos_dir / "doomed.git").exists()
