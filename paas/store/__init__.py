"""Durable state of the platform: one SQLite database under PAAS_HOME."""

from paas.store.db import Store

__all__ = ["Store"]
