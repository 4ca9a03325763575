"""The `paas` command: a click group of noun:verb commands; `main` maps errors to exit codes."""

from __future__ import annotations

import os
import sys

import click

from paas import __version__
from paas.cli.commands import LazyGroup
from paas.cli.context import SSH_USER_ENV, Context
from paas.config import Settings, SettingsError
from paas.errors import PaasError

# Wide enough that each command's one-line description is not cut short.
HELP_WIDTH = 110


@click.group(cls=LazyGroup, context_settings={
    "help_option_names": ["-h", "--help"], "terminal_width": HELP_WIDTH,
    "max_content_width": HELP_WIDTH,
})
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """paas: git push to deploy, on your own host."""
    if click_ctx.obj is None:
        click_ctx.obj = Context(Settings.from_env(), user=os.environ.get(SSH_USER_ENV) or None)


@cli.command("version")
def version() -> None:
    """Show the platform's version."""
    click.echo(f"paas {__version__}")


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(click_ctx: click.Context, command: str | None) -> None:
    """List the commands, or show how to use one: help [COMMAND]."""
    group = click_ctx.parent
    assert group is not None
    if command is None:
        click.echo(cli.get_help(group))
        return
    found = cli.get_command(group, command)
    if found is None:
        raise click.UsageError(f"No such command {command!r}.", group)
    click.echo(found.get_help(click.Context(found, info_name=command, parent=group)))


def main(argv: list[str] | None = None) -> int:
    """Run one command; PaasError becomes a message on stderr and its exit code."""
    try:
        result = cli.main(args=argv, prog_name="paas", standalone_mode=False)
    except click.exceptions.NoSuchOption as exc:
        exc.show()
        return 2
    except click.UsageError as exc:
        if exc.ctx is None or exc.ctx.command is cli:
            click.echo(cli.get_help(click.Context(cli, info_name="paas")), err=True)
            click.echo(f"\n{exc.format_message()}", err=True)
            return 1 if "No such command" in exc.format_message() else 2
        exc.show()
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (PaasError, SettingsError) as exc:
        click.echo(f"error: {exc}", err=True)
        return getattr(exc, "exit_code", 1)
    # Without standalone mode, click returns the code of ctx.exit(code) instead of raising.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
