"""A stand-in for paas.deploy.pipeline, driven by `fake-deploy.json` in the pushed tree.

Workers started by `fake_pipeline_worker` register it as `paas.deploy.pipeline`, so a push
runs the real hook, queue, worker, deploy_task and log stream, and only the build is fake.
JSON keys: lines (logged first), wait_for (a path to wait for), after (logged next),
fail (raise DeployError with it), crash (raise RuntimeError), version (of the release).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from paas.config import Settings
from paas.core.models import Release
from paas.errors import DeployError

WAIT_LIMIT_S = 60.0


def deploy(
    settings: Settings, *, app: str, source_dir: Path, git_sha: str, log: Callable[[str], None],
    user: str = "",
) -> Release:
    spec_file = source_dir / "fake-deploy.json"
    spec = json.loads(spec_file.read_text()) if spec_file.exists() else {}
    log(f"-----> Fake build of {app} at {git_sha[:7]}")
    log("       files: " + " ".join(sorted(p.name for p in source_dir.iterdir())))
    for line in spec.get("lines", []):
        log(line)
    if "wait_for" in spec:
        _wait_for(Path(spec["wait_for"]))
    for line in spec.get("after", []):
        log(line)
    if "fail" in spec:
        raise DeployError(spec["fail"])
    if spec.get("crash"):
        raise RuntimeError("the fake pipeline crashed")
    return Release(app=app, version=int(spec.get("version", 1)), image="fake")


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise DeployError(f"gave up waiting for {path}")
        time.sleep(0.05)


def worker_argv(python: str) -> list[str]:
    """argv of a real `paas worker` whose jobs see this module as paas.deploy.pipeline."""
    code = (
        "import sys, fake_pipeline\n"
        "sys.modules['paas.deploy.pipeline'] = fake_pipeline\n"
        "from paas.cli.main import main\n"
        "sys.exit(main(['worker']))\n"
    )
    return [python, "-c", code]
