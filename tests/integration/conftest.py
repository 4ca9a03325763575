"""Fixtures of the integration tests: a worker whose deploy pipeline is the fake one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fake_pipeline import worker_argv

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake_pipeline_worker(redis_server: str, start_worker) -> subprocess.Popen:
    return start_worker(worker_argv(sys.executable), pythonpath=[HERE])
