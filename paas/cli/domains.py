"""domains:* commands: the host names an app answers to besides APP.PAAS_DOMAIN."""

from __future__ import annotations

import click

from paas.cli.access import require_app
from paas.cli.context import Context, pass_ctx
from paas.cli.output import emit, format_option
from paas.core.names import validate_domain
from paas.errors import DomainExistsError, PaasError


def default_domain(ctx: Context, app: str) -> str:
    return f"{app}.{ctx.settings.domain}"


def _refresh(ctx: Context, app: str) -> None:
    """Re-render the app's route if it has one (a release went live)."""
    if ctx.store.current_release(app) is None:
        return
    from paas.deploy import operations

    operations.refresh_routes(ctx.settings, app)


def _check_free(ctx: Context, app: str, domain: str) -> None:
    """Another app's default host name is not free, even if nobody added it."""
    suffix = f".{ctx.settings.domain}"
    if domain.endswith(suffix) and domain != default_domain(ctx, app):
        owner = domain.removesuffix(suffix)
        if owner in {a.name for a in ctx.store.list_apps()}:
            raise DomainExistsError(f"{domain} is the default domain of app {owner!r}")


@click.command("domains:add")
@click.argument("app")
@click.argument("domains", nargs=-1, required=True)
@pass_ctx
def domains_add(ctx: Context, app: str, domains: tuple[str, ...]) -> None:
    """Route DOMAINS to APP (www.example.com, *.example.com)."""
    require_app(ctx, app)
    names = [validate_domain(d) for d in domains]
    existing = set(ctx.store.list_domains(app)) | {default_domain(ctx, app)}
    for name in names:
        _check_free(ctx, app, name)
    for name in names:
        if name in existing:
            click.echo(f"-----> {name} is already a domain of {app}")
            continue
        ctx.store.add_domain(app, name)
        existing.add(name)
        click.echo(f"-----> Added {name} to {app}")
    _refresh(ctx, app)


@click.command("domains:remove")
@click.argument("app")
@click.argument("domains", nargs=-1, required=True)
@pass_ctx
def domains_remove(ctx: Context, app: str, domains: tuple[str, ...]) -> None:
    """Stop routing DOMAINS to APP."""
    require_app(ctx, app)
    names = [validate_domain(d) for d in domains]
    missing = [n for n in names if n not in set(ctx.store.list_domains(app))]
    if missing:
        raise PaasError(f"not a domain of {app}: {', '.join(missing)} (see domains:list {app})")
    for name in names:
        ctx.store.remove_domain(app, name)
        click.echo(f"-----> Removed {name} from {app}")
    _refresh(ctx, app)


@click.command("domains:list")
@click.argument("app")
@format_option
@pass_ctx
def domains_list(ctx: Context, app: str, fmt: str) -> None:
    """List the host names APP answers to, its default one first."""
    require_app(ctx, app)
    default = default_domain(ctx, app)
    names = [default, *ctx.store.list_domains(app)]

    def text() -> None:
        click.echo(f"=====> {app} domains")
        for name in names:
            click.echo(f"{name} (default)" if name == default else name)

    emit(fmt, names, text)


COMMANDS = [domains_add, domains_remove, domains_list]
