"""worker: run the deploy worker in the foreground."""

from __future__ import annotations

import click

from paas.cli.context import Context, pass_ctx
from paas.jobs.worker import run_worker


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@pass_ctx
def worker(ctx: Context, burst: bool) -> None:
    """Run the deploy worker (waits up to 30 s for Redis)."""
    run_worker(ctx.settings, burst=burst)


COMMANDS = [worker]
