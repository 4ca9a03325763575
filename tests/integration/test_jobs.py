"""paas.jobs against a real redis-server and real rq workers."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import fake_pipeline
import pytest

from paas.config import Settings
from paas.errors import JobError
from paas.jobs.queue import connect, enqueue_deploy, job_pending, wait_for_redis
from paas.jobs.stream import FINISHED_TTL_S, LogStream
from paas.jobs.tasks import deploy_task

HERE = Path(__file__).resolve().parent


def echo_task(settings_env: dict[str, str], app: str, git_sha: str, source_dir: str,
              stream_id: str) -> str:
    """A test-only deploy task: reports what it was given, then succeeds."""
    stream = LogStream(connect(Settings.from_env(settings_env)), stream_id)
    stream.write(f"app={app} sha={git_sha}")
    stream.write("files=" + ",".join(sorted(p.name for p in Path(source_dir).iterdir())))
    stream.finish(True, "echoed")
    return "echoed"


def test_connect_reports_where_redis_was_expected(settings: Settings) -> None:
    with pytest.raises(JobError, match="cannot reach redis at unix://.*redis.sock"):
        connect(settings)


def test_stream_follow_yields_lines_then_result_and_expires(
    settings: Settings, redis_server: str
) -> None:
    redis = connect(settings)
    writer = LogStream(redis, "s1")

    def produce() -> None:
        for i in range(3):
            writer.write(f"line {i}\n")
            time.sleep(0.1)
        writer.finish(False, "it broke")

    threading.Thread(target=produce).start()
    reader = LogStream(redis, "s1")
    with pytest.raises(JobError, match="has not finished"):
        _ = reader.result
    assert list(reader.follow(timeout=10)) == ["line 0", "line 1", "line 2"]
    assert reader.result == (False, "it broke")
    assert 0 < redis.ttl(writer.key) <= FINISHED_TTL_S


def test_stream_follow_times_out(settings: Settings, redis_server: str) -> None:
    stream = LogStream(connect(settings), "quiet")
    stream.write("only line")
    lines = []
    with pytest.raises(JobError, match="timed out"):
        for line in stream.follow(timeout=0.5):
            lines.append(line)
    assert lines == ["only line"]


def test_stream_follow_ends_when_the_job_is_gone(settings: Settings, redis_server: str) -> None:
    stream = LogStream(connect(settings), "lost")
    stream.write("started")
    assert list(stream.follow(timeout=10, alive=lambda: False)) == ["started"]
    assert stream.result == (False, "the job stopped without reporting a result")


def test_enqueue_runs_the_task_on_a_real_worker(
    settings: Settings, redis_server: str, start_worker, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "Procfile").write_text("web: true\n")
    start_worker(pythonpath=[HERE])
    stream_id = enqueue_deploy(settings, "demo", "abc123", str(source), task="test_jobs.echo_task")
    redis = connect(settings)
    stream = LogStream(redis, stream_id)
    lines = list(stream.follow(timeout=30, alive=lambda: job_pending(redis, stream_id)))
    assert lines == ["app=demo sha=abc123", "files=Procfile"]
    assert stream.result == (True, "echoed")
    assert stream_id.startswith("demo-")


def test_worker_waits_for_redis_to_come_up(settings: Settings, start_worker, request) -> None:
    worker = start_worker()
    time.sleep(1.0)
    assert worker.poll() is None, "the worker gave up before redis started"
    request.getfixturevalue("redis_server")
    wait_for_redis(settings, 10)
    from paas.jobs.queue import deploy_queue, worker_counts

    redis = connect(settings)
    deadline = time.monotonic() + 20
    while worker_counts(redis)[0] == 0:
        assert time.monotonic() < deadline, "the worker never registered"
        time.sleep(0.1)
    assert deploy_queue(redis).name == "deploy"


@pytest.fixture
def fake_pipeline_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paas.deploy.pipeline", fake_pipeline)


def _source(tmp_path: Path, spec: str) -> Path:
    source = tmp_path / "build"
    source.mkdir()
    (source / "fake-deploy.json").write_text(spec)
    return source


def _run_task(settings: Settings, source: Path, stream_id: str) -> str:
    return deploy_task(settings.to_env(), "demo", "f" * 40, str(source), stream_id)


def _result(settings: Settings, stream_id: str) -> tuple[list[str], tuple[bool, str]]:
    stream = LogStream(connect(settings), stream_id)
    lines = list(stream.follow(timeout=5))
    return lines, stream.result


@pytest.mark.usefixtures("fake_pipeline_module", "redis_server")
def test_deploy_task_success_reports_the_release(settings: Settings, tmp_path: Path) -> None:
    source = _source(tmp_path, '{"lines": ["hello"], "version": 7}')
    assert _run_task(settings, source, "ok") == "Released v7"
    lines, result = _result(settings, "ok")
    assert "hello" in lines and lines[0].startswith("-----> Fake build of demo")
    assert result == (True, "Released v7")
    assert not source.exists()


@pytest.mark.usefixtures("fake_pipeline_module", "redis_server")
def test_deploy_task_paas_error_is_a_failed_deploy(settings: Settings, tmp_path: Path) -> None:
    source = _source(tmp_path, '{"fail": "health check failed"}')
    _run_task(settings, source, "bad")
    assert _result(settings, "bad")[1] == (False, "health check failed")
    assert not source.exists()


@pytest.mark.usefixtures("fake_pipeline_module", "redis_server")
def test_deploy_task_bug_is_reported_and_reraised(settings: Settings, tmp_path: Path) -> None:
    source = _source(tmp_path, '{"crash": true}')
    with pytest.raises(RuntimeError):
        _run_task(settings, source, "bug")
    ok, message = _result(settings, "bug")[1]
    assert not ok and message.startswith("internal error: RuntimeError")
    assert not source.exists()
