"""Job functions run by the worker: deploy_task wraps the deploy pipeline for one push."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from rq.timeouts import JobTimeoutException

from paas.config import Settings
from paas.errors import PaasError
from paas.jobs.queue import DEPLOY_TIMEOUT_S, connect
from paas.jobs.stream import LogStream


def deploy_task(
    settings_env: dict[str, str], app: str, git_sha: str, source_dir: str, stream_id: str,
    user: str = "",
) -> str:
    """Deploy `source_dir` as a new release of `app`, streaming progress to `stream_id`.

    A PaasError is a failed deploy, reported on the stream; anything else is a bug, reported
    and re-raised so rq records it. `source_dir` is removed in every case, and the job
    returns only once the old containers it replaced are retired.
    """
    try:
        settings = Settings.from_env(settings_env)
        stream = LogStream(connect(settings), stream_id)
        return _run(settings, stream, app, git_sha, Path(source_dir), user)
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)
        _wait_retired()


def _wait_retired() -> None:
    """The old containers are retired in a thread after the push was told it succeeded;
    the job's process must not exit before that is done."""
    rollout = sys.modules.get("paas.deploy.rollout")  # not loaded: nothing to wait for
    if rollout is not None:
        rollout.wait_retired()


def _run(
    settings: Settings, stream: LogStream, app: str, git_sha: str, source: Path, user: str
) -> str:
    try:
        # Imported here: the pipeline pulls in builders, engine and router, which the
        # worker needs only when a job runs.
        from paas.deploy.pipeline import deploy

        release = deploy(settings, app=app, source_dir=source, git_sha=git_sha, log=stream.write,
                         user=user)
    except PaasError as exc:
        stream.finish(False, str(exc))
        return f"failed: {exc}"
    except JobTimeoutException:
        stream.finish(False, f"the deploy took longer than {DEPLOY_TIMEOUT_S // 60} minutes")
        raise
    except Exception as exc:
        stream.finish(False, f"internal error: {type(exc).__name__}: {exc}")
        raise
    message = f"Released v{release.version}"
    stream.finish(True, message)
    return message
