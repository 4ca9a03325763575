"""run: a one-off process of an app (Dokku's and Heroku's `run APP COMMAND...`).

A container of the current release runs COMMAND with the app's config, named APP.run.N. When
our stdin is a terminal (`ssh -t`, a local shell) it gets a terminal of its own and we attach
like `paas engine run -it`; else our stdin goes in and its stdout and stderr come out apart.
The exit status is the command's; the container is removed after, its output kept in the
app's log (`logs APP -p run`).
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from paas.cli import terminal
from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.core.names import validate_config_key
from paas.deploy.context import open_engine
from paas.engine.engine import Engine
from paas.errors import StateError, UsageError
from paas.scheduler import logarchive
from paas.scheduler.oneoff import LABEL_RUN_ID, oneoff_spec

HANGUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def parse_env(items: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        env[validate_config_key(key)] = value
    return env


def _stdin_fd() -> int | None:
    """Our stdin's descriptor, None when it has none (a test's capture)."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@click.command("run", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable for this process only.")
@click.option("--no-tty", is_flag=True, help="No terminal, even when stdin is one.")
@click.argument("app")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def run(ctx: Context, env: tuple[str, ...], no_tty: bool, app: str, command: tuple[str, ...]) -> None:
    """Run a one-off process: run [-e K=V] [--no-tty] APP COMMAND...

    The words of COMMAND are joined by spaces into one shell command line, as ssh does:
    run APP 'echo $HOME; exit 3' runs both commands, here and over SSH."""
    require_app(ctx, app)
    extra = parse_env(env)
    release = ctx.store.current_release(app)
    if release is None:
        raise StateError(f"app {app!r} has no running release yet: git push it first")
    from paas.cli.engine_attach import run_attached, run_with_session

    stdin = _stdin_fd()
    tty = stdin is not None and not no_tty and sys.stdin.isatty()
    engine = open_engine(ctx.settings)
    spec = oneoff_spec(engine, release, command, config=ctx.store.get_config(app),
                       extra_env=extra, tty=tty, interactive=stdin is not None)
    try:
        with _ended_by_hangup():
            if spec.interactive:
                code = run_with_session(engine.runtime, spec, remove=False)
            else:
                code = run_attached(engine.runtime, spec, remove=False)
    finally:
        _keep_and_remove(engine, spec.labels[LABEL_RUN_ID], ctx.settings.logs_dir)
    if code:
        raise click.exceptions.Exit(code)


@contextlib.contextmanager
def _ended_by_hangup() -> Iterator[None]:
    """SIGTERM or SIGHUP (the SSH client went away: its server ends our process group; a
    closed terminal) unwinds the run, so the one-off container is removed, not left running.
    Without a terminal, the session passes these signals on to the container instead."""
    def hang_up(signum: int, _frame: object) -> None:
        raise click.exceptions.Exit(128 + signum)

    with terminal.signals_handled(HANGUP_SIGNALS, hang_up):
        yield


def _keep_and_remove(engine: Engine, run_id: str, logs_dir: Path) -> None:
    """The one-off's output stays in the app's log (`logs APP -p run`); the container goes."""
    for container in engine.runtime.list({LABEL_RUN_ID: run_id}):
        engine.runtime.stop(container.id, timeout=0)
        logarchive.keep(engine, container.id, logs_dir)
        engine.runtime.remove(container.id, timeout=0)


COMMANDS = [run]
