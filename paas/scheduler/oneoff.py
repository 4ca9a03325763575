"""One-off processes (`paas run APP CMD...`, Heroku's one-off dynos): a container of the app's
current release running another command, named APP.run.N, with the app's config as it is now.

The spec comes from `process_spec` (the release's image, launcher rule, limits, labels with
paas.oneoff=1 so rollouts leave it alone, no restart policy); running it in the foreground is
the caller's (the CLI attaches a terminal or streams it), and so is removing it after.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from paas.core.models import Release
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.errors import UsageError
from paas.scheduler.inspect import app_processes
from paas.scheduler.local import process_spec

ONEOFF_TYPE = "run"
# Tells one run's container from another's when both took the same N (started at once).
LABEL_RUN_ID = "paas.run-id"


def command_text(argv: Sequence[str]) -> str:
    """The command line the process runs: the words joined by spaces, for a shell to parse,
    as `ssh HOST COMMAND...` and `heroku run` do (`run app 'echo $HOME; exit 3'` works the
    same locally and over SSH; a word that must keep its spaces is quoted twice)."""
    if not argv:
        raise UsageError("run needs a command: run APP COMMAND...")
    return " ".join(argv)


def next_index(engine: Engine, app: str) -> int:
    """The lowest N that no one-off container of the app holds now."""
    taken = {p.index for p in app_processes(engine, app, oneoff=True)}
    index = 1
    while index in taken:
        index += 1
    return index


def oneoff_spec(
    engine: Engine, release: Release, argv: Sequence[str], *, config: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None, tty: bool = False, interactive: bool = False,
) -> ContainerSpec:
    """The container of `run`: `release`'s image running `argv`, with `config` (the app's
    config now, which may be newer than the release's after a --no-restart change) and
    `extra_env` (run -e) on top."""
    index = next_index(engine, release.app)
    spec = process_spec(engine, release, ONEOFF_TYPE, index,
                        name=f"{release.app}.{ONEOFF_TYPE}.{index}", command=command_text(argv),
                        tty=tty, interactive=interactive, config=config, extra_env=extra_env)
    return replace(spec, labels={**spec.labels, LABEL_RUN_ID: uuid.uuid4().hex})
