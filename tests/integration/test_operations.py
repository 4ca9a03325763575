"""Every operation of paas.deploy.operations against the real engine and nginx: config
changes (and --no-restart), scale and balancing, rollback, limits in the cgroup, a crashing
config release, stop/start/restart, domains, rename and destroy."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploykit import CRASHY_WEB, WEB, WORKER, Rig, bodies, rig_fixture  # noqa: F401

from paas.core.models import Limits, ReleaseKind, ReleaseStatus
from paas.deploy import operations
from paas.errors import AppNotFoundError, DeployError, FormationInvalidError, ReleaseNotFoundError
from paas.scheduler.logarchive import archive_dir, kept_logs

MiB = 1 << 20


def _deployed(rig: Rig, app: str, greeting: str = "hi", **procfile: str) -> None:
    rig.store.create_app(app)
    rig.store.update_config(app, {"GREETING": greeting})
    rig.push(app, procfile or {"web": CRASHY_WEB, "worker": WORKER})


def test_config_change_makes_a_release_that_new_containers_see(rig: Rig) -> None:
    _deployed(rig, "conf")
    release = operations.update_config(rig.settings, "conf", {"GREETING": "bonjour"}, [],
                                       restart=True, user="ann", log=rig.log)

    assert release is not None and release.kind is ReleaseKind.CONFIG and release.user == "ann"
    assert release.config == {"GREETING": "bonjour"} and release.version == 2
    assert rig.get("conf") == (200, "bonjour from web.1\n")
    assert rig.dynos("conf") == [("web", "1", "2", "running")]
    # The retired v1 container's log is kept for `logs`.
    (kept,) = kept_logs(archive_dir(rig.settings.logs_dir, "conf"))
    assert (kept.dyno, kept.release) == ("web.1", 1)


def test_no_restart_stores_the_config_and_leaves_the_containers(rig: Rig) -> None:
    _deployed(rig, "quiet")
    before = rig.dynos("quiet")
    ids = {c.id for c in rig.containers("quiet")}

    assert operations.update_config(rig.settings, "quiet", {"GREETING": "shh"}, [],
                                    restart=False, user="", log=rig.log) is None

    assert rig.store.get_config("quiet") == {"GREETING": "shh"}
    assert [r.version for r in rig.store.list_releases("quiet")] == [1]
    assert rig.dynos("quiet") == before and {c.id for c in rig.containers("quiet")} == ids
    assert rig.get("quiet") == (200, "hi from web.1\n")


def test_scale_runs_the_formation_and_nginx_balances_the_webs(rig: Rig) -> None:
    _deployed(rig, "scaled")
    release = operations.scale(rig.settings, "scaled", {"web": 2, "worker": 1}, user="",
                               log=rig.log)

    assert release is not None and release.formation == {"web": 2, "worker": 1}
    assert rig.dynos("scaled") == [("web", "1", "2", "running"), ("web", "2", "2", "running"),
                                   ("worker", "1", "2", "running")]
    assert set(bodies(rig, "scaled", 6)) == {"hi from web.1", "hi from web.2"}

    operations.scale(rig.settings, "scaled", {"web": 0}, user="", log=rig.log)
    assert rig.dynos("scaled") == [("worker", "1", "3", "running")]
    assert rig.get("scaled")[0] == 503
    assert rig.store.get_formation("scaled") == {"web": 0, "worker": 1}


def test_scale_refuses_a_type_the_release_lacks(rig: Rig) -> None:
    _deployed(rig, "strict", web=WEB)
    with pytest.raises(FormationInvalidError, match="no process type clock"):
        operations.scale(rig.settings, "strict", {"clock": 1}, user="", log=rig.log)
    assert [r.version for r in rig.store.list_releases("strict")] == [1]


def test_rollback_restores_image_config_and_formation(rig: Rig) -> None:
    _deployed(rig, "back")
    operations.update_config(rig.settings, "back", {"GREETING": "v2"}, [], restart=True,
                             user="", log=rig.log)
    operations.scale(rig.settings, "back", {"worker": 1}, user="", log=rig.log)

    release = operations.rollback(rig.settings, "back", 1, user="bob", log=rig.log)

    assert release.version == 4 and release.kind is ReleaseKind.ROLLBACK
    assert release.config == {"GREETING": "hi"} == rig.store.get_config("back")
    assert release.formation == {"web": 1, "worker": 0} == rig.store.get_formation("back")
    assert rig.get("back") == (200, "hi from web.1\n")
    assert rig.dynos("back") == [("web", "1", "4", "running")]
    # Without a version: the release before the live one (v3: GREETING=v2, a worker).
    operations.rollback(rig.settings, "back", None, user="", log=rig.log)
    assert rig.get("back") == (200, "v2 from web.1\n")
    assert rig.dynos("back") == [("web", "1", "5", "running"), ("worker", "1", "5", "running")]


def test_limits_reach_the_containers_cgroups(rig: Rig) -> None:
    _deployed(rig, "limited")
    release = operations.set_limits(rig.settings, "limited", "web", 64 * MiB, 0.5, user="",
                                    log=rig.log)

    assert release is not None and release.limits == {"web": Limits(64 * MiB, 0.5)}
    (web,) = rig.containers("limited")
    assert _memory_limit(rig, web.id) == 64 * MiB
    # Dokku's _default_: every type without limits of its own.
    operations.set_limits(rig.settings, "limited", None, 96 * MiB, None, user="", log=rig.log)
    operations.scale(rig.settings, "limited", {"worker": 1}, user="", log=rig.log)
    limits = {c.labels["paas.process"]: _memory_limit(rig, c.id) for c in rig.containers("limited")}
    assert limits == {"web": 64 * MiB, "worker": 96 * MiB}


def _memory_limit(rig: Rig, container_id: str) -> int:
    for path in rig.engine.runtime.cgroups.paths(container_id):
        for name in ("memory.max", "memory.limit_in_bytes"):
            if (path / name).exists():
                return int((path / name).read_text())
    raise AssertionError(f"no memory cgroup for {container_id}")


def test_a_crashing_config_release_is_failed_and_the_old_one_serves(rig: Rig) -> None:
    _deployed(rig, "fragile")
    ids = {c.id for c in rig.containers("fragile")}

    with pytest.raises(DeployError, match="crashing on purpose"):
        operations.update_config(rig.settings, "fragile", {"CRASH": "1"}, [], restart=True,
                                 user="", log=rig.log)

    failed = rig.store.get_release("fragile", 2)
    assert failed.status is ReleaseStatus.FAILED and "crashing on purpose" in failed.reason
    assert {c.id for c in rig.containers("fragile")} == ids
    assert rig.get("fragile") == (200, "hi from web.1\n")


def test_stop_start_and_restart(rig: Rig) -> None:
    _deployed(rig, "cycle")
    operations.stop(rig.settings, "cycle", rig.log)
    assert rig.containers("cycle") == [] and rig.get("cycle")[0] == 503

    operations.start(rig.settings, "cycle", rig.log)
    assert rig.get("cycle") == (200, "hi from web.1\n")
    ids = {c.id for c in rig.containers("cycle")}

    operations.restart(rig.settings, "cycle", rig.log)
    after = rig.containers("cycle")
    assert len(after) == 1 and not ids & {c.id for c in after}
    assert rig.get("cycle") == (200, "hi from web.1\n")
    assert [r.version for r in rig.store.list_releases("cycle")] == [1]  # no new release


def test_restart_before_any_deploy_says_so(rig: Rig) -> None:
    rig.store.create_app("fresh")
    with pytest.raises(ReleaseNotFoundError, match="not been deployed"):
        operations.restart(rig.settings, "fresh", rig.log)


def test_domains_are_routed_after_refresh(rig: Rig) -> None:
    _deployed(rig, "named")
    rig.store.add_domain("named", "www.example.test")
    operations.refresh_routes(rig.settings, "named")
    assert rig.get("named", host="www.example.test") == (200, "hi from web.1\n")
    assert rig.get("named") == (200, "hi from web.1\n")


def test_rename_moves_records_repository_route_and_containers(rig: Rig) -> None:
    _deployed(rig, "before")
    repo = rig.settings.repos_dir / "before.git"
    repo.mkdir(parents=True)

    operations.rename(rig.settings, "before", "after", rig.log)

    assert rig.get("after") == (200, "hi from web.1\n")
    assert rig.get("before")[0] == 404
    assert rig.containers("before") == [] and rig.dynos("after") == [("web", "1", "1", "running")]
    assert (rig.settings.repos_dir / "after.git").is_dir() and not repo.exists()
    assert [k.dyno for k in kept_logs(archive_dir(rig.settings.logs_dir, "after"))] == ["web.1"]
    assert not archive_dir(rig.settings.logs_dir, "before").exists()
    assert rig.store.get_config("after") == {"GREETING": "hi"}
    with pytest.raises(AppNotFoundError):
        rig.store.get_app("before")


def test_destroy_leaves_nothing(rig: Rig) -> None:
    _deployed(rig, "doomed")
    operations.scale(rig.settings, "doomed", {"worker": 1}, user="", log=rig.log)
    dirs = [rig.settings.repos_dir / "doomed.git", rig.settings.cache_dir / "doomed"]
    for directory in dirs:
        directory.mkdir(parents=True)

    operations.destroy(rig.settings, "doomed", rig.log)

    assert rig.containers("doomed") == []
    assert not any(d.exists() for d in dirs)
    assert not archive_dir(rig.settings.logs_dir, "doomed").exists()
    assert not rig.nginx.app_path("doomed").exists() and rig.get("doomed")[0] == 404
    assert not list(Path(rig.nginx.prefix, "logs").glob("doomed.*"))
    with pytest.raises(AppNotFoundError):
        rig.store.get_app("doomed")
