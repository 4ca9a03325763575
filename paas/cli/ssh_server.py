"""ssh-server: run the git/command SSH server in the foreground."""

from __future__ import annotations

import logging

import click

from paas.cli.context import Context, pass_ctx


@click.command("ssh-server")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@pass_ctx
def ssh_server(ctx: Context, host: str) -> None:
    """Serve `git push` and remote commands over SSH on PAAS_SSH_PORT."""
    from paas.ssh.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # paramiko logs every port probe and aborted handshake as an ERROR with a traceback.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    address = f"{host}:{ctx.settings.ssh_port}"
    serve(ctx.settings, ready=lambda: click.echo(f"ssh server listening on {address}"), host=host)


COMMANDS = [ssh_server]
