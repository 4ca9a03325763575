"""Where the platform keeps its state: PAAS_HOME (or the default) and the engine root in it.

Stdlib `os` only, so the thin `paas` client (paas.cli.client) finds the engine root without
importing Settings and its dependencies; Settings derives the same paths from here.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing and collections.abc would cost the client milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOME = "/var/lib/paas"
ENGINE_DIR = "engine"


def home_dir(env: Mapping[str, str]) -> str:
    """The home directory that `env` names, made absolute against the current directory
    (not normalised: `..` stays, as with Path.absolute, so a symlinked parent is followed)."""
    raw = env.get("PAAS_HOME") or DEFAULT_HOME
    return raw if os.path.isabs(raw) else os.path.join(os.getcwd(), raw)


def engine_root(env: Mapping[str, str]) -> str:
    return os.path.join(home_dir(env), ENGINE_DIR)
