"""The deploy queue: connecting to Redis, enqueueing deploys, asking after a job's state."""

from __future__ import annotations

import time
import uuid

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import WorkerStatus

from paas.config import Settings
from paas.errors import JobError

DEPLOY_QUEUE = "deploy"
DEPLOY_TIMEOUT_S = 30 * 60
DEPLOY_TASK = "paas.jobs.tasks.deploy_task"
RESULT_TTL_S = 24 * 3600
CONNECT_TIMEOUT_S = 5.0
WAIT_POLL_S = 0.2
_PENDING = frozenset(
    {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
)


def connect(settings: Settings) -> Redis:
    """A checked connection to the platform's Redis, or JobError saying where it looked."""
    url = settings.effective_redis_url
    try:
        redis = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        redis.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise JobError(f"cannot reach redis at {url}: {exc}") from None
    return redis


def wait_for_redis(settings: Settings, timeout: float) -> Redis:
    """Connect, retrying until Redis accepts connections or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(settings)
        except JobError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(WAIT_POLL_S)


def deploy_queue(redis: Redis) -> Queue:
    return Queue(DEPLOY_QUEUE, connection=redis)


def enqueue_deploy(
    settings: Settings,
    app: str,
    git_sha: str,
    source_dir: str,
    task: str = DEPLOY_TASK,
    user: str = "",
) -> str:
    """Queue a deploy of `source_dir`; returns the id of both the job and its log stream.

    `task` is the dotted path the worker imports and calls with deploy_task's keyword
    arguments: the seam where tests plug in their own task.
    """
    redis = connect(settings)
    stream_id = f"{app}-{uuid.uuid4().hex}"
    try:
        deploy_queue(redis).enqueue_call(
            task,
            kwargs={
                "settings_env": settings.to_env(),
                "app": app,
                "git_sha": git_sha,
                "source_dir": source_dir,
                "stream_id": stream_id,
                **({"user": user} if user else {}),  # the pusher's key name, for the release
            },
            timeout=DEPLOY_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=RESULT_TTL_S,
            job_id=stream_id,
            description=f"deploy {app} {git_sha[:12]}",
        )
    except RedisError as exc:
        raise JobError(f"cannot queue the deploy: {exc}") from None
    return stream_id


def job_status(redis: Redis, job_id: str) -> JobStatus | None:
    """The job's status; None once it has vanished (expired, or never queued)."""
    try:
        return Job.fetch(job_id, connection=redis).get_status(refresh=False)
    except NoSuchJobError:
        return None
    except RedisError as exc:
        raise JobError(f"cannot read the state of job {job_id}: {exc}") from None


def job_pending(redis: Redis, job_id: str) -> bool:
    """Whether the job may still report: queued or running (False once it ended or vanished)."""
    return job_status(redis, job_id) in _PENDING


def job_queued(redis: Redis, job_id: str) -> bool:
    """Whether the job still waits in the queue for a worker."""
    return job_status(redis, job_id) == JobStatus.QUEUED


def worker_counts(redis: Redis) -> tuple[int, int]:
    """(workers on the deploy queue, how many of them are idle)."""
    try:
        states = [w.get_state() for w in Worker.all(connection=redis, queue=deploy_queue(redis))]
    except RedisError as exc:
        raise JobError(f"cannot list workers: {exc}") from None
    return len(states), states.count(WorkerStatus.IDLE)
