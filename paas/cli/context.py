"""What every command receives: the Settings read once at the entry point, and the Store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import click

from paas.config import Settings

if TYPE_CHECKING:
    from paas.store import Store


# Set by the SSH server (never by the client) to the name of the key that logged in.
SSH_USER_ENV = "PAAS_SSH_USER"


@dataclass
class Context:
    settings: Settings
    # The SSH key name of the user over SSH (PAAS_SSH_USER, set by the SSH server only);
    # None for the host's own operator, who may do everything.
    user: str | None = None

    @cached_property
    def store(self) -> Store:
        # Imported on first use: commands that never touch the state db start faster.
        from paas.store import Store

        return Store(self.settings.db_path)


pass_ctx = click.make_pass_decorator(Context)
