"""`paas engine monitor`: run the engine root's monitor (restart policies, `-d --rm`, restore
after a reboot), and `ensure_monitor`, which `run` calls when a container needs one.

The platform runs it from the Procfile (`--wait`: if a monitor that `run` started already
holds the root, it waits its turn instead of exiting, which would stop the platform).
"""

from __future__ import annotations

import os
import sys

import click

from paas.cli.context import Context, pass_ctx
from paas.engine.runtime import Runtime
from paas.engine.runtime import monitor as engine_monitor


def _log(line: str) -> None:
    click.echo(line)


def ensure_monitor(ctx: Context, runtime: Runtime) -> None:
    """Start a detached `paas engine monitor` for this root unless one runs."""
    argv = [sys.executable, "-m", "paas.cli.main", "engine", "monitor"]
    engine_monitor.ensure_running(runtime, argv, {**os.environ, **ctx.settings.to_env()})


@click.command("monitor")
@click.option("--wait", "wait_for_lock", is_flag=True,
              help="If another monitor watches this root, wait for it to end, then take over.")
@pass_ctx
def monitor(ctx: Context, wait_for_lock: bool) -> None:
    """Watch this engine root's containers: record exits, restart by policy, remove --rm ones."""
    from paas.cli.engine import open_engine  # it registers the engine verbs: import it late

    runtime = open_engine(ctx).runtime
    if not engine_monitor.serve(runtime, _log, wait_for_lock=wait_for_lock):
        click.echo(f"a monitor already watches {runtime.root}", err=True)

