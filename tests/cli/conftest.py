"""Fixtures of the CLI tests: the engine `paas engine ...` opens, with busybox in it."""

from __future__ import annotations

import pytest

from paas.engine.engine import Engine


@pytest.fixture
def engine(cli_engine: Engine) -> Engine:
    return cli_engine
