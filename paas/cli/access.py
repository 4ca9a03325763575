"""Who may do what: the host's operator and admin keys everything, other keys their apps.

A key added with `ssh-keys:add --admin` is an admin. Another key may act on an app only when
it is a member (`acl:add APP USER`, or it created the app); the rest is "permission denied",
checked before anything changes.
"""

from __future__ import annotations

from paas.cli.context import Context
from paas.errors import PermissionDeniedError


def is_admin(ctx: Context) -> bool:
    if ctx.user is None:
        return True
    key = ctx.store.key_by_name(ctx.user)
    return key is not None and key.admin


def require_admin(ctx: Context) -> None:
    if not is_admin(ctx):
        raise PermissionDeniedError("permission denied: only an admin may do this")


def require_app(ctx: Context, app: str) -> str:
    """The app's name, once it exists and the user may manage it."""
    ctx.store.get_app(app)
    if not is_admin(ctx) and not ctx.store.is_member(app, ctx.user or ""):
        raise PermissionDeniedError(f"permission denied: you are not a member of app {app!r}")
    return app


def visible_apps(ctx: Context) -> list[str]:
    """The apps the user may see: all for an admin, else those it is a member of."""
    if is_admin(ctx):
        return [app.name for app in ctx.store.list_apps()]
    return ctx.store.apps_of(ctx.user or "")
