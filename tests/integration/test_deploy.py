"""The push pipeline against the real engine and nginx: build (Dockerfile builder, FROM
busybox), release snapshot, rollout, route; a failing release leaves the old one serving;
a second deploy of an app waits for the first and says so."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from deploykit import CRASHY_WEB, WEB, WORKER, Rig, rig_fixture  # noqa: F401

from paas.config import Settings
from paas.core.models import ReleaseKind, ReleaseStatus
from paas.deploy import operations
from paas.deploy.context import Deployment, app_lock
from paas.deploy.pipeline import deploy
from paas.deploy.rollout import roll_out, wait_retired
from paas.errors import DeployError
from paas.jobs.queue import connect
from paas.jobs.stream import LogStream
from paas.jobs.tasks import deploy_task


def test_push_builds_releases_and_routes_the_web_process(rig: Rig) -> None:
    rig.store.create_app("hello")
    rig.store.update_config("hello", {"GREETING": "hello"})
    release = rig.push("hello", {"web": WEB, "worker": WORKER}, sha="1" * 40)

    assert rig.get("hello") == (200, "hello from web.1\n")
    stored = rig.store.get_release("hello", 1)
    assert stored.status is ReleaseStatus.SUCCEEDED and stored.kind is ReleaseKind.DEPLOY
    assert stored.config == {"GREETING": "hello"}
    assert stored.formation == {"web": 1, "worker": 0} == rig.store.get_formation("hello")
    assert stored.git_sha == "1" * 40 and release.version == 1
    assert rig.dynos("hello") == [("web", "1", "1", "running")]
    assert any(line.startswith("-----> Launching... done, v1") for line in rig.lines)

    rig.push("hello", {"web": WEB, "worker": WORKER}, sha="2" * 40)
    assert rig.dynos("hello") == [("web", "1", "2", "running")]  # v1's container retired
    assert rig.get("hello") == (200, "hello from web.1\n")


def test_a_crashing_release_fails_and_the_old_one_keeps_serving(rig: Rig) -> None:
    rig.store.create_app("crashy")
    rig.push("crashy", {"web": WEB})
    before = rig.dynos("crashy")

    with pytest.raises(DeployError, match="v2 failed") as failure:
        rig.push("crashy", {"web": 'echo "no luck"; exit 3'})

    assert "no luck" in str(failure.value)
    failed = rig.store.get_release("crashy", 2)
    assert failed.status is ReleaseStatus.FAILED and "exited" in failed.reason
    assert rig.store.current_release("crashy").version == 1  # type: ignore[union-attr]
    assert rig.dynos("crashy") == before
    assert rig.get("crashy") == (200, " from web.1\n")


def test_a_web_less_app_runs_without_a_route_until_scaled(rig: Rig) -> None:
    rig.store.create_app("workers")
    rig.store.update_config("workers", {"GREETING": "busy"})
    rig.push("workers", {"worker": WORKER})
    assert rig.dynos("workers") == []
    assert not rig.nginx.app_path("workers").exists()
    assert rig.get("workers")[0] == 404

    release = operations.scale(rig.settings, "workers", {"worker": 1}, user="ann", log=rig.log)

    assert release is not None and release.kind is ReleaseKind.SCALE and release.user == "ann"
    assert rig.dynos("workers") == [("worker", "1", "2", "running")]


def test_a_second_deploy_of_an_app_waits_for_the_first_and_says_so(rig: Rig) -> None:
    rig.store.create_app("queued")
    lines: list[str] = []
    waiting = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if "waiting" in line:
            waiting.set()

    errors: list[BaseException] = []

    def second() -> None:
        try:
            operations.update_config(rig.settings, "queued", {"A": "1"}, [], restart=True,
                                     user="", log=log)
            rig.push("queued", {"web": CRASHY_WEB})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with app_lock(rig.settings, "queued", rig.log):
        thread = threading.Thread(target=second)
        thread.start()
        assert waiting.wait(30), lines
        assert rig.store.get_config("queued") == {"A": "1"}  # stored at once
        assert rig.store.list_releases("queued") == []  # the release waits for the lock
    thread.join(60)
    assert not errors and not thread.is_alive()
    assert [r.version for r in rig.store.list_releases("queued")] == [1]


def test_an_image_with_the_launcher_gets_the_procfile_command_as_one_argument(rig: Rig) -> None:
    # What the buildpack builder makes: ENTRYPOINT a launcher that runs "$1" with /bin/sh -c
    # (here "$0": sh -c takes the first argument after the script as $0).
    busybox = rig.engine.images.get("busybox")
    entrypoint = ("/bin/sh", "-c", 'echo launched; exec /bin/sh -c "$0"')
    config = busybox.config.replace(entrypoint=entrypoint, cmd=None,
                                    labels={"paas.launcher": "1"})
    image = rig.engine.images.commit(busybox, None, config, "a launcher image")
    rig.store.create_app("launched")
    release = rig.store.add_release("launched", image.id, {"web": WEB}, "", "launcher",
                                    config={"GREETING": "via"}, formation={"web": 1})

    roll_out(Deployment.open(rig.settings, rig.log), release)

    (web,) = rig.containers("launched")
    assert web.spec.argv == (*entrypoint, WEB)
    assert rig.get("launched") == (200, "via from web.1\n")


def test_a_push_retires_the_old_containers_in_the_background_after_wait_to_retire(
    rig: Rig,
) -> None:
    rig.store.create_app("drain")
    rig.push("drain", {"web": WEB})
    (old,) = rig.containers("drain")
    rig.store.set_prop("drain", "checks", "wait-to-retire", "3")

    with tempfile.TemporaryDirectory(dir=rig.settings.home) as tmp:
        (Path(tmp) / "Dockerfile").write_text("FROM busybox\n")
        (Path(tmp) / "Procfile").write_text(f"web: {WEB}\n")
        deploy(rig.settings, "drain", Path(tmp), "b" * 40, rig.log)
    try:
        # The push is done and the new release serves while the old one drains.
        assert old.id in {c.id for c in rig.containers("drain")}
        assert rig.dynos("drain")[-1] == ("web", "1", "2", "running")
    finally:
        wait_retired()
    assert rig.dynos("drain") == [("web", "1", "2", "running")]


def test_the_deploy_job_records_the_pusher_and_reports_on_its_stream(
    rig: Rig, redis_server: str
) -> None:
    rig.store.create_app("job")
    source = Path(tempfile.mkdtemp(dir=rig.settings.home))
    (source / "Dockerfile").write_text("FROM busybox\n")
    (source / "Procfile").write_text(f"web: {WEB}\n")
    env = {**rig.settings.to_env(), "PAAS_REDIS_URL": redis_server}

    result = deploy_task(env, "job", "c" * 40, str(source), "job-1", user="ann")

    assert result == "Released v1" and not source.exists()
    release = rig.store.get_release("job", 1)
    assert release.user == "ann" and release.status is ReleaseStatus.SUCCEEDED
    stream = LogStream(connect(Settings.from_env(env)), "job-1")
    lines = list(stream.follow(timeout=10))
    assert stream.result == (True, "Released v1")
    assert any(line.startswith("-----> Launching... done, v1") for line in lines)
    assert rig.get("job") == (200, " from web.1\n")


def test_a_web_that_never_listens_times_out_unless_its_checks_are_disabled(rig: Rig) -> None:
    rig.store.create_app("deaf")
    rig.store.set_prop("deaf", "checks", "timeout", "1")
    deaf = {"web": "exec sleep 100000"}

    with pytest.raises(DeployError, match="did not accept connections on port 5000 within 1s"):
        rig.push("deaf", deaf)
    assert rig.containers("deaf") == []

    rig.store.set_prop("deaf", "checks", "disabled", "web")
    release = rig.push("deaf", deaf)
    assert rig.dynos("deaf") == [("web", "1", str(release.version), "running")]
    assert rig.get("deaf")[0] == 502  # routed unchecked, as asked
