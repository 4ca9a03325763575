"""Where each `paas` command lives; the group imports a command's module only when it is used.

A command that runs loads its own module and nothing else, so `paas engine build` does not pay
for rq and redis. `COMMAND_MODULES` must name every command of every module (a test checks).
"""

from __future__ import annotations

import importlib
import os

import click

from paas.cli.context import SSH_USER_ENV, Context

COMMAND_MODULES: dict[str, str] = {
    "apps:list": "apps",
    "apps:create": "apps",
    "apps:destroy": "apps",
    "apps:info": "apps",
    "apps:rename": "apps",
    "config": "appconfig",
    "config:show": "appconfig",
    "config:get": "appconfig",
    "config:set": "appconfig",
    "config:unset": "appconfig",
    "domains:add": "domains",
    "domains:remove": "domains",
    "domains:list": "domains",
    "checks:set": "checks",
    "checks:disable": "checks",
    "checks:enable": "checks",
    "checks:report": "checks",
    "resource:limit": "resource",
    "resource:limit-clear": "resource",
    "builder:set": "builder",
    "acl:add": "acl",
    "acl:remove": "acl",
    "acl:list": "acl",
    "ps": "ps",
    "ps:scale": "ps",
    "ps:restart": "ps",
    "ps:stop": "ps",
    "ps:start": "ps",
    "logs": "logs",
    "releases": "releases",
    "releases:info": "releases",
    "rollback": "releases",
    "run": "run",
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


def over_ssh(ctx: click.Context) -> bool:
    """Whether an SSH user runs this command line (the SSH server sets PAAS_SSH_USER).

    `--help` is handled before the group's callback makes the Context, so the variable is
    read here too; it is the same one the callback reads.
    """
    obj = ctx.find_object(Context)
    return bool(obj.user if obj is not None else os.environ.get(SSH_USER_ENV))


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use.

    Over SSH the host-only commands do not exist: help leaves them out and asking for one is
    "No such command" (the SSH server refuses them first; this is the second line).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(COMMAND_MODULES)
        if over_ssh(ctx):
            names -= HOST_ONLY
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in HOST_ONLY and over_ssh(ctx):
            return None
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMAND_MODULES:
            for loaded in load_module_commands(COMMAND_MODULES[cmd_name]):
                self.add_command(loaded)
            command = super().get_command(ctx, cmd_name)
        return command
