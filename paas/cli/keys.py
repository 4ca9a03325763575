"""ssh-keys:* commands: the deploy keys the SSH server accepts."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from paas.cli.access import require_admin
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.errors import KeyInvalidError


@click.command("ssh-keys:add")
@click.argument("name")
@click.argument("pubkey_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--admin", is_flag=True, help="Allow this key every command.")
@pass_ctx
def keys_add(ctx: Context, name: str, pubkey_file: Path, admin: bool) -> None:
    """Register a deploy key: NAME and an OpenSSH public key file ('-' for stdin)."""
    text = sys.stdin.read() if str(pubkey_file) == "-" else _read(pubkey_file)
    key = ctx.store.add_key(name, text, admin=admin)
    click.echo(f"added key {key.name} {key.fingerprint}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyInvalidError(f"cannot read {path}: {exc}") from None


@click.command("ssh-keys:list")
@format_option
@pass_ctx
def keys_list(ctx: Context, fmt: str) -> None:
    """List deploy keys (admins only over SSH)."""
    require_admin(ctx)
    keys = ctx.store.list_keys()
    data = [{"name": k.name, "fingerprint": k.fingerprint, "admin": k.admin,
             "created_at": k.created_at} for k in keys]

    def text() -> None:
        for key in keys:
            click.echo(f"{key.name} {key.fingerprint}{' (admin)' if key.admin else ''}")

    emit(fmt, data, text)


@click.command("ssh-keys:remove")
@click.argument("name")
@pass_ctx
def keys_remove(ctx: Context, name: str) -> None:
    """Remove a deploy key."""
    ctx.store.remove_key(name)
    click.echo(f"removed key {name}")


COMMANDS = [keys_add, keys_list, keys_remove]
