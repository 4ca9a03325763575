"""worker: run the platform's deploy workers (settings.workers of them) in the foreground."""

from __future__ import annotations

import click

from paas.cli.context import Context, pass_ctx
from paas.jobs.worker import run_workers


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option("-n", "--workers", "count", type=click.IntRange(min=1), default=None,
              help="How many workers (default: PAAS_WORKERS, 2).")
@pass_ctx
def worker(ctx: Context, burst: bool, count: int | None) -> None:
    """Run the deploy workers: pushes of different apps build in parallel, one per worker
    (waits up to 30 s for Redis)."""
    code = run_workers(ctx.settings, count, burst=burst)
    if code:
        raise click.exceptions.Exit(code)


COMMANDS = [worker]
