"""`paas engine exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] CONTAINER CMD [ARGS...]`.

The command runs inside a running container (its namespaces, cgroup and confinement, see
paas.engine.runtime.exec); its exit code is ours. Without -i it reads nothing (stdin is
/dev/null, as with Docker); with -t it gets a pty of the container, and this process copies
between that pty and its own terminal.
"""

from __future__ import annotations

import os
import sys

import click

from paas.cli import terminal
from paas.cli.container_flags import check_workdir, merged_env
from paas.cli.context import Context, pass_ctx


@click.command("exec", context_settings={"ignore_unknown_options": True,
                                         "allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open and pass it on.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal (a pty).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set an env var.")
@click.option("-u", "--user", help="USER[:GROUP] (name or number) to run as.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.argument("name", metavar="CONTAINER")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def exec_command(ctx: Context, interactive: bool, tty: bool, env: tuple[str, ...],
                 user: str | None, workdir: str | None, name: str,
                 command: tuple[str, ...]) -> None:
    """Run a command in a running container."""
    from paas.cli.engine_run import _open, find  # engine_run registers this verb: import late

    check_workdir(workdir)
    eng = _open(ctx)
    container = find(eng.runtime, name)
    sys.stdout.flush()
    stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY)
    out, err = sys.stdout.fileno(), sys.stderr.fileno()
    try:
        code = eng.runtime.exec(
            container.id, command, env=merged_env((), env), user=user, workdir=workdir, tty=tty,
            stdin=stdin, stdout=out, stderr=err,
            winsize=terminal.window_size(stdin if interactive else out) if tty else None,
            attach=terminal.relay(stdin if interactive else None, out) if tty else None,
        )
    finally:
        if not interactive:
            os.close(stdin)
    if code:
        raise click.exceptions.Exit(code)
