"""logs: an app's output, every process merged by time (Dokku's `logs`, Heroku's format).

`logs APP [-n N] [-p TYPE] [-q]` prints the last lines; with `-t` it keeps streaming, also
from containers a later deploy or scale starts, until the reader goes away (^C, a closed
pipe, the SSH client's disconnect: the SSH server then ends the whole process group).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
from collections.abc import Iterable

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.core.names import validate_process_type
from paas.deploy.context import open_engine
from paas.scheduler.logarchive import archive_dir
from paas.scheduler.logs import DEFAULT_LINES, AppLogLine, follow_app_logs, read_app_logs

_GONE = select.POLLERR | select.POLLHUP


def _stdout_fd() -> int | None:
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # not a file (a test's capture): nobody to lose


def reader_gone(fd: int | None) -> bool:
    """Whether the reading end of our stdout is closed (a pipe's POLLERR, a pty's POLLHUP):
    follow then stops even when no line comes to fail on."""
    if fd is None:
        return False
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    return any(events & _GONE for _, events in poller.poll(0))


@click.command("logs")
@click.argument("app")
@click.option("-t", "--tail", "follow", is_flag=True,
              help="Keep streaming new lines, also of processes started later.")
@click.option("-n", "--num", type=click.IntRange(min=0), default=DEFAULT_LINES, show_default=True,
              help="How many of the last lines to show first.")
@click.option("-p", "--ps", "process_type", metavar="TYPE",
              help="Only this process type (web, worker, run...).")
@click.option("-q", "--quiet", is_flag=True, help="The text alone: no time, no process name.")
@pass_ctx
def logs(ctx: Context, app: str, follow: bool, num: int, process_type: str | None, quiet: bool) -> None:
    """Show an app's log: logs APP [-t] [-n N] [-p TYPE] [-q]."""
    require_app(ctx, app)
    if process_type is not None:
        validate_process_type(process_type)
    engine = open_engine(ctx.settings)
    archive = archive_dir(ctx.settings.logs_dir, app)  # what retired processes said
    if not follow:
        _print(read_app_logs(engine, app, tail=num, process_type=process_type, archive=archive),
               quiet)
        return
    fd = _stdout_fd()
    lines = follow_app_logs(engine, app, tail=num, process_type=process_type, archive=archive,
                            stop=lambda: reader_gone(fd))
    with contextlib.closing(lines):
        _print(lines, quiet)


def _print(lines: Iterable[AppLogLine], quiet: bool) -> None:
    try:
        for line in lines:
            click.echo(line.format(quiet))
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    """The reader left: what is still buffered goes nowhere, and no error at exit."""
    fd = _stdout_fd()
    if fd is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


COMMANDS = [logs]
