"""`paas engine stats [-a] [--no-stream] [CONTAINER...]`: CPU %, memory and pids, as Docker shows them.

Numbers come from each container's cgroup (Runtime.stats). CPU % is the CPU time a container
used between two samples over the wall time between them, 100% being one core, as in
`docker stats`; a container's first sample has nothing to compare with and shows 0.00%, so
`--no-stream` reads twice, a short interval apart, before it prints.

Streaming redraws the table every second: on a terminal it clears the screen first, otherwise
each refresh is printed as plain lines. With names it ends once none of them runs; without,
it shows the running containers (all with -a) anew at each refresh, until ^C.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import click

from paas.cli.container_format import STATS_HEADERS, cpu_percent, stats_row
from paas.cli.context import Context, pass_ctx
from paas.cli.engine_format import Row, table
from paas.engine.containers import Container, ContainerStatus
from paas.engine.runtime import Runtime
from paas.engine.runtime.cgroups import Stats
from paas.errors import ContainerError

REFRESH_S = 1.0  # Docker's stream interval
NO_STREAM_INTERVAL_S = 0.5  # long enough for a CPU % that means something, short to wait for
CLEAR_SCREEN = "\x1b[2J\x1b[H"  # erase, cursor home

Targets = Callable[[], list[Container]]


@dataclass(frozen=True, slots=True)
class Sample:
    """A container's cgroup numbers and the monotonic time (ns) they were read at."""

    stats: Stats
    at_ns: int


class Sampler:
    """Reads containers' cgroups; keeps each one's previous sample to turn CPU time into CPU %."""

    def __init__(self, runtime: Runtime, host_memory: int) -> None:
        self.runtime = runtime
        self.host_memory = host_memory
        self.previous: dict[str, Sample] = {}

    def read(self, container: Container) -> Sample | None:
        """A sample of a running container; None when it is not running (or stopped meanwhile)."""
        if container.status is not ContainerStatus.RUNNING:
            return None
        try:
            stats = self.runtime.stats(container.id)
        except (ContainerError, OSError):  # exited between the listing and the read
            return None
        return Sample(stats, time.monotonic_ns())

    def rows(self, containers: Sequence[Container]) -> list[Row]:
        current: dict[str, Sample] = {}
        rows = []
        for container in containers:
            sample = self.read(container)
            before = self.previous.get(container.id)
            cpu = 0.0
            if sample is not None and before is not None:
                cpu = cpu_percent(sample.stats.cpu_ns - before.stats.cpu_ns,
                                  sample.at_ns - before.at_ns)
            if sample is not None:
                current[container.id] = sample
            rows.append(stats_row(container, None if sample is None else sample.stats, cpu,
                                  self.host_memory))
        self.previous = current
        return rows


def host_memory() -> int:
    """The host's total memory: the limit shown for a container without -m, as Docker does."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def named_targets(runtime: Runtime, ids: Sequence[str]) -> Targets:
    """The named containers, read anew each time; one removed meanwhile drops out."""
    def targets() -> list[Container]:
        found = []
        for container_id in ids:
            try:
                found.append(runtime.get(container_id))
            except ContainerError:
                continue
        return found

    return targets


def listed_targets(runtime: Runtime, show_all: bool) -> Targets:
    """Every running container (every container with -a), listed anew each time."""
    def targets() -> list[Container]:
        containers = runtime.list()
        if not show_all:
            containers = [c for c in containers if c.status is ContainerStatus.RUNNING]
        return sorted(containers, key=lambda c: c.name)

    return targets


def show(rows: Sequence[Row], redraw: bool) -> None:
    text = table(STATS_HEADERS, rows)
    click.echo(CLEAR_SCREEN + text if redraw else text)


def one_shot(sampler: Sampler, targets: Targets) -> None:
    """Two reads a short interval apart, then one table."""
    rows = sampler.rows(targets())
    if sampler.previous:  # something runs: read again for its CPU %
        time.sleep(NO_STREAM_INTERVAL_S)
        rows = sampler.rows(targets())
    show(rows, redraw=False)


def stream(sampler: Sampler, targets: Targets, until_all_stopped: bool, redraw: bool) -> None:
    """A table every REFRESH_S; with `until_all_stopped`, the last one once nothing runs."""
    while True:
        started = time.monotonic()
        show(sampler.rows(targets()), redraw)
        if until_all_stopped and not sampler.previous:
            return
        time.sleep(max(0.0, REFRESH_S - (time.monotonic() - started)))


@click.command("stats")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers, not only running.")
@click.option("--no-stream", is_flag=True, help="Print one table and exit.")
@click.argument("names", nargs=-1, metavar="[CONTAINER...]")
@pass_ctx
def stats(ctx: Context, show_all: bool, no_stream: bool, names: tuple[str, ...]) -> None:
    """Live CPU %, memory and pids of containers (the running ones when none is named)."""
    from paas.cli.engine_run import _open, find  # engine_run registers this verb: import late

    eng = _open(ctx)
    runtime = eng.runtime
    if names:
        targets = named_targets(runtime, [find(runtime, name).id for name in names])
    else:
        targets = listed_targets(runtime, show_all)
    sampler = Sampler(runtime, host_memory())
    if no_stream:
        one_shot(sampler, targets)
        return
    try:
        stream(sampler, targets, until_all_stopped=bool(names), redraw=sys.stdout.isatty())
    except KeyboardInterrupt:  # ^C is how a stream of all containers ends: not an error
        return
