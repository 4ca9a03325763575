"""Durable state of the platform: one SQLite database under PAAS_HOME."""

from paas.store.apps import AppsMixin
from paas.store.appstate import AppStateMixin
from paas.store.keys import KeysMixin
from paas.store.releases import ReleasesMixin


class Store(AppsMixin, ReleasesMixin, KeysMixin, AppStateMixin):
    """Apps, releases, keys and each app's config, formation, domains, ACL and properties."""


__all__ = ["Store"]
