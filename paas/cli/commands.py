"""Registers every command module with the `paas` group."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from paas.cli import apps, keys

    for module in (apps, keys):
        for command in module.COMMANDS:
            group.add_command(command)
