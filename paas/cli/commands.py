"""Registers every command module with the `paas` group."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from paas.cli import apps, engine, git_hook, keys, platform, ssh_server, worker

    for module in (apps, engine, git_hook, keys, platform, ssh_server, worker):
        for command in module.COMMANDS:
            group.add_command(command)
