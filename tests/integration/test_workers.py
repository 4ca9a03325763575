"""`paas worker`: a pool of settings.workers rq workers against a real redis-server, running
jobs of different apps at the same time, replacing a worker that dies, stopping on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from testkit import paas_argv, wait_until

from paas.config import Settings
from paas.jobs.queue import connect, enqueue_deploy, job_pending
from paas.jobs.stream import LogStream
from paas.jobs.worker import QUICK_DEATHS_LIMIT

HERE = Path(__file__).resolve().parent
BARRIER_S = 30.0


def barrier_task(settings_env: dict[str, str], app: str, git_sha: str, source_dir: str,
                 stream_id: str) -> str:
    """A test-only deploy task: marks itself started, then waits for every app named in
    `git_sha` (comma separated) to have started too. Jobs that cannot run at the same time
    never all meet, and report it."""
    stream = LogStream(connect(Settings.from_env(settings_env)), stream_id)
    meeting = Path(source_dir).parent
    (meeting / f"{app}.started").write_text(str(os.getpid()))
    stream.write(f"{app} started in pid {os.getpid()}")
    others = [meeting / f"{name}.started" for name in git_sha.split(",")]
    deadline = time.monotonic() + BARRIER_S
    while not all(p.exists() for p in others):
        if time.monotonic() > deadline:
            stream.finish(False, f"{app} ran alone")
            return "alone"
        time.sleep(0.05)
    stream.finish(True, f"{app} met the others")
    return "met"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _start_pool(start_worker, *args: str) -> subprocess.Popen:
    return start_worker(paas_argv("worker", *args), pythonpath=[HERE, HERE.parent])


def _follow(settings: Settings, stream_id: str) -> tuple[list[str], tuple[bool, str]]:
    redis = connect(settings)
    stream = LogStream(redis, stream_id)
    lines = list(stream.follow(timeout=60, alive=lambda: job_pending(redis, stream_id)))
    return lines, stream.result


def test_two_workers_run_two_apps_at_once(settings: Settings, redis_server: str, start_worker,
                                          tmp_path: Path) -> None:
    assert settings.workers == 2
    pool = _start_pool(start_worker)
    ids = []
    for app in ("one", "two"):
        source = tmp_path / app
        source.mkdir()
        ids.append(enqueue_deploy(settings, app, "one,two", str(source),
                                  task="test_workers.barrier_task"))
    results = [_follow(settings, stream_id) for stream_id in ids]
    assert [r[1] for r in results] == [(True, "one met the others"), (True, "two met the others")]
    pids = {int(lines[0].rsplit(" ", 1)[1]) for lines, _ in results}
    assert len(pids) == 2 and pool.pid not in pids


def test_pool_size_respawn_and_stop(settings: Settings, redis_server: str, start_worker) -> None:
    pool = _start_pool(start_worker, "--workers", "3")
    wait_until(lambda: len(_children(pool.pid)) == 3, what="three workers")
    workers = _children(pool.pid)
    groups = {os.getpgid(pid) for pid in workers}
    assert groups == workers, "each worker leads its own process group"

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in _children(pool.pid) and len(_children(pool.pid)) == 3,
               what="a replacement worker")
    replaced = _children(pool.pid)

    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    for pid in replaced:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the pool"


def test_workers_die_with_a_killed_pool(settings: Settings, redis_server: str,
                                        start_worker) -> None:
    pool = _start_pool(start_worker, "-n", "1")
    wait_until(lambda: len(_children(pool.pid)) == 1, what="the worker")
    (worker,) = _children(pool.pid)
    pool.kill()
    pool.wait(timeout=10)
    wait_until(lambda: not Path(f"/proc/{worker}").exists(), timeout=10,
               what="the orphaned worker to die")


def test_pool_gives_up_on_workers_that_keep_dying(settings: Settings, redis_server: str,
                                                  start_worker) -> None:
    pool = _start_pool(start_worker, "-n", "1")
    for _ in range(QUICK_DEATHS_LIMIT):
        wait_until(lambda: len(_children(pool.pid)) == 1, what="a worker")
        (worker,) = _children(pool.pid)
        os.kill(worker, signal.SIGKILL)  # right after its start, every time
        wait_until(lambda dead=worker: dead not in _children(pool.pid), what="the dead one reaped")
    assert pool.wait(timeout=30) == 1
