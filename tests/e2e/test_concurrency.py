"""End to end: pushes of two apps build at the same time (one per deploy worker), and a second
push to an app that is deploying waits for the first and says so.

No timing asserts: the builds meet at a barrier. Each app pins (`.buildpacks`) a test buildpack
whose compile calls an HTTP barrier the test serves on the bridge's host address: `meet` answers
only once every named app's build has arrived (builds that could not overlap never meet and
fail the push), `hold` answers once the test lets it go.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushkit import Platform, running_platform, write_files
from rq.job import Job

from paas.config import Settings
from paas.jobs.queue import connect, deploy_queue

BARRIER_S = 120.0
COMPILE = """\
#!/bin/sh
# A test buildpack: wait at the barrier whose URL the app names, then build nothing.
echo "-----> Waiting at the barrier"
python3 - "$(cat "$1/barrier.url")" <<'EOF' || exit 1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=150) as reply:
    print("       barrier says:", reply.read().decode(), flush=True)
EOF
"""
SERVER = """\
import http.server, os
BODY = open("body.txt", "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""


class Barrier:
    """GET /meet/NAME/A,B: answers `met` once A and B arrived (504 after BARRIER_S);
    GET /hold/NAME: answers `released` once release() is called."""

    def __init__(self, host: str) -> None:
        self.arrived: set[str] = set()
        self.released = threading.Event()
        self.cond = threading.Condition()
        barrier = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = barrier.visit(self.path.strip("/").split("/"))
                body = b"met" if ok and "meet" in self.path else b"released" if ok else b"alone"
                self.send_response(200 if ok else 504)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def visit(self, parts: list[str]) -> bool:
        kind, name = parts[0], parts[1]
        with self.cond:
            self.arrived.add(name)
            self.cond.notify_all()
            if kind == "meet":
                return self.cond.wait_for(lambda: set(parts[2].split(",")) <= self.arrived,
                                          BARRIER_S)
        return self.released.wait(BARRIER_S)

    def wait_arrival(self, name: str, timeout: float = BARRIER_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: name in self.arrived, timeout), \
                f"no build of {name} reached the barrier"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, stack_engine: Path) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("keys"),
                          stack_engine, PAAS_CHECK_WAIT="1", PAAS_CHECK_TIMEOUT="30",
                          PAAS_WORKERS="2") as platform:
        yield platform


@pytest.fixture
def barrier(platform: Platform) -> Iterator[Barrier]:
    barrier = Barrier(platform.gateway)
    try:
        yield barrier
    finally:
        barrier.stop()


@pytest.fixture(scope="module")
def buildpack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The barrier buildpack, readable by the builder's non-root user."""
    root = tmp_path_factory.mktemp("barrier-buildpack")
    pack = root / "barrier"
    write_files(pack, {"bin/detect": "#!/bin/sh\necho Barrier\n", "bin/compile": COMPILE,
                       "bin/release": "#!/bin/sh\necho '--- {}'\n"})
    for path in (root, pack, pack / "bin", *(pack / "bin").iterdir()):
        path.chmod(0o755)
    return pack


def _app(platform: Platform, parent: Path, app: str, buildpack: Path, url: str) -> Path:
    files = {".buildpacks": f"{buildpack}\n", "barrier.url": url, "body.txt": f"{app} v1",
             "server.py": SERVER, "Procfile": "web: python3 server.py\n"}
    return platform.new_repo(parent, app, files)


def test_pushes_of_two_apps_build_at_the_same_time(
    platform: Platform, barrier: Barrier, buildpack: Path, tmp_path: Path
) -> None:
    apps = ("left", "right")
    repos = [_app(platform, tmp_path, app, buildpack, f"{barrier.url}/meet/{app}/left,right")
             for app in apps]
    pushes = [platform.start_push(repo) for repo in repos]
    for app, push in zip(apps, pushes, strict=True):
        push.finish()
        print(f"{app}:\n{push.text}")
        assert push.returncode == 0, push.text
        assert "barrier says: met" in push.text and "-----> Launching... done, v1" in push.text
        assert platform.get(app) == (200, f"{app} v1")

    jobs = _jobs(platform, apps)
    assert len(jobs) == 2, [job.id for job in jobs]
    assert len({job.worker_name for job in jobs}) == 2, "one worker ran both builds"
    first, second = sorted(jobs, key=lambda job: job.started_at)
    assert second.started_at < first.ended_at, "the two deploys did not overlap"


def _jobs(platform: Platform, apps: tuple[str, ...]) -> list[Job]:
    """The finished deploy jobs of these apps, from rq's records in the platform's Redis."""
    redis = connect(Settings.from_env(platform.env))
    registry = deploy_queue(redis).finished_job_registry
    jobs = [Job.fetch(job_id, connection=redis) for job_id in registry.get_job_ids()]
    return [job for job in jobs if job.id.rsplit("-", 1)[0] in apps]


def test_a_second_push_to_a_deploying_app_waits_for_the_first(
    platform: Platform, barrier: Barrier, buildpack: Path, tmp_path: Path
) -> None:
    repo = _app(platform, tmp_path / "one", "busy", buildpack, f"{barrier.url}/hold/busy")
    other = tmp_path / "two" / "busy"
    shutil.copytree(repo, other)
    write_files(other, {"body.txt": "busy v2"})
    platform.commit(other, "the second push")

    first = platform.start_push(repo)
    barrier.wait_arrival("busy")
    # To master: main is still being pushed, and git would refuse a second update of it whose
    # old value the first push is about to change. Both branches deploy.
    second = platform.start_push(other, "paas", "main:master")
    second.wait_for("waiting")
    assert first.returncode is None, "the first push ended while its build was held"
    barrier.released.set()
    first.finish()
    second.finish()
    print(f"first:\n{first.text}\nsecond:\n{second.text}")
    assert first.returncode == 0 and "-----> Launching... done, v1" in first.text, first.text
    assert second.returncode == 0 and "-----> Launching... done, v2" in second.text, second.text
    first_done = first.started + (first.first("Launching... done") or 0)
    second_waiting = second.started + (second.first("waiting") or 0)
    assert second_waiting < first_done
    assert platform.get("busy") == (200, "busy v2")


def test_a_push_waits_for_a_free_worker_when_all_are_busy(
    platform: Platform, barrier: Barrier, buildpack: Path, tmp_path: Path
) -> None:
    apps = ("held1", "held2", "queued")
    repos = [_app(platform, tmp_path, app, buildpack, f"{barrier.url}/hold/{app}") for app in apps]
    pushes = [platform.start_push(repo) for repo in repos[:2]]
    for app in apps[:2]:
        barrier.wait_arrival(app)
    pushes.append(platform.start_push(repos[2]))
    pushes[2].wait_for("All 2 deploy workers are busy with other pushes; waiting for a free one")
    assert "queued" not in barrier.arrived
    barrier.released.set()
    for app, push in zip(apps, pushes, strict=True):
        push.finish()
        assert push.returncode == 0, push.text
        assert platform.get(app) == (200, f"{app} v1")
