"""The deploy worker: an rq Worker on the deploy queue, started once Redis is reachable."""

from __future__ import annotations

from rq import Worker

from paas.config import Settings
from paas.jobs.queue import DEPLOY_QUEUE, wait_for_redis

REDIS_WAIT_S = 30.0


def run_worker(settings: Settings, burst: bool = False) -> None:
    """Work deploy jobs until stopped (or until the queue is empty, with `burst`)."""
    redis = wait_for_redis(settings, REDIS_WAIT_S)
    Worker([DEPLOY_QUEUE], connection=redis).work(burst=burst, logging_level="INFO")
