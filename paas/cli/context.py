"""What every command receives: the Settings read once at the entry point, and the Store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import click

from paas.config import Settings
from paas.store import Store


@dataclass
class Context:
    settings: Settings

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.db_path)


pass_ctx = click.make_pass_decorator(Context)
