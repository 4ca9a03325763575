"""Where each `paas` command lives; the group imports a command's module only when it is used.

A command that runs loads its own module and nothing else, so `paas engine build` does not pay
for rq and redis. `COMMAND_MODULES` must name every command of every module (a test checks).
"""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES: dict[str, str] = {
    "apps:list": "apps",
    "apps:create": "apps",
    "engine": "engine",
    "git-hook": "git_hook",
    "ssh-keys:add": "keys",
    "ssh-keys:list": "keys",
    "ssh-keys:remove": "keys",
    "up": "platform",
    "down": "platform",
    "redis": "platform",
    "router": "platform",
    "web": "platform",
    "ssh-server": "ssh_server",
    "worker": "worker",
}
# The host operator's commands: the platform's own processes, the container engine (root on
# this host) and the key list. An SSH client never runs them (paas.ssh.session refuses them).
HOST_ONLY = frozenset({
    "engine", "git-hook", "ssh-keys:add", "ssh-keys:remove", "up", "down", "redis", "router",
    "web", "ssh-server", "worker",
})


def load_module_commands(module_name: str) -> list[click.Command]:
    module = importlib.import_module(f"paas.cli.{module_name}")
    return list(module.COMMANDS)


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMAND_MODULES:
            for loaded in load_module_commands(COMMAND_MODULES[cmd_name]):
                self.add_command(loaded)
            command = super().get_command(ctx, cmd_name)
        return command
