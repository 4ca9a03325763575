"""End to end, as a Heroku user would: `git push` of a Flask app and of a Node app with no
Dockerfile through the real SSH server; the shipped buildpacks build them in stack containers
(pip from a wheel index the test serves on the bridge, no internet), both answer through the
router, `ps:scale` starts the Flask app's worker, and a second push with the same requirements
installs nothing and serves the change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushkit import Platform, flask_files, node_files, running_platform, write_files
from testkit import wait_until
from wheelhouse import pip_config, serve_wheels

PIP_LINE = re.compile(r"\b(Collecting|Installing collected|Downloading|Processing)\b")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, stack_engine: Path) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("keys"),
                          stack_engine, PAAS_CHECK_WAIT="1", PAAS_CHECK_TIMEOUT="30") as platform:
        yield platform


@pytest.fixture(scope="module")
def pip_index(platform: Platform) -> Iterator[dict[str, str]]:
    """The app config that points pip at wheels served on the bridge's host address."""
    with serve_wheels(platform.gateway) as index:
        yield pip_config(index.url)


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_flask_app_push_scale_and_cached_second_push(
    platform: Platform, pip_index: dict[str, str], tmp_path: Path
) -> None:
    _ok(platform.ssh("apps:create", "flask"))
    _ok(platform.ssh("config:set", "flask", "--no-restart",
                     *(f"{k}={v}" for k, v in pip_index.items())))
    repo = platform.new_repo(tmp_path, "flask", flask_files("flask v1"))

    first = platform.push(repo)
    print(f"cold push: {first.elapsed:.1f}s\n{first.text}")
    detected = first.first("-----> Python app detected")
    launched = first.first("-----> Launching... done, v")
    assert detected is not None and launched is not None, first.text
    assert detected < launched, "the build output arrived in one piece, not as it happened"
    assert PIP_LINE.search(first.text) and "flask" in first.text.lower(), first.text
    assert "       Procfile declares types -> web, worker" in first.text
    assert platform.get("flask") == (200, "flask v1")

    _ok(platform.ssh("ps:scale", "flask", "worker=1"))
    wait_until(lambda: "worker ready" in platform.ssh("logs", "flask", "-p", "worker").stdout,
               timeout=60, what="the worker's first line in `logs -p worker`")

    write_files(repo, {"app.py": flask_files("flask v2")["app.py"]})
    platform.commit(repo, "v2: a code change, the same requirements")
    second = platform.push(repo)
    print(f"code-only push: {second.elapsed:.1f}s\n{second.text}")
    assert "       Requirements unchanged" in second.text, second.text
    assert not PIP_LINE.search(second.text), "the second push ran pip:\n" + second.text
    assert "-----> Launching... done, v" in second.text
    assert platform.get("flask") == (200, "flask v2")
    assert re.search(r"worker\.1\b.*\bup\b", _ok(platform.ssh("ps", "flask"))), \
        "the worker did not survive the deploy"


def test_node_app_push_serves_npm_start(platform: Platform, tmp_path: Path) -> None:
    repo = platform.new_repo(tmp_path, "nodeapp", node_files("node v1"))
    pushed = platform.push(repo)
    print(f"node push: {pushed.elapsed:.1f}s\n{pushed.text}")
    assert "-----> Node.js app detected" in pushed.text
    assert "-----> Installing dependencies with npm ci" in pushed.text
    assert "-----> Launching... done, v1" in pushed.text
    assert platform.get("nodeapp") == (200, "node v1")
