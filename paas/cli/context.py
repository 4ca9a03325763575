"""What every command receives: the Settings read once at the entry point, and the Store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import click

from paas.config import Settings

if TYPE_CHECKING:
    from paas.store import Store


@dataclass
class Context:
    settings: Settings

    @cached_property
    def store(self) -> Store:
        # Imported on first use: commands that never touch the state db start faster.
        from paas.store import Store

        return Store(self.settings.db_path)


pass_ctx = click.make_pass_decorator(Context)
