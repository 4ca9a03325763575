"""`paas engine ...`: the container engine's own verbs, with Docker's names, flags and output.

Each verb is one function. This module parses arguments, gathers what the engine cannot know
by itself (which containers use which images, which images the platform's kept releases
need) and prints; the work is done in paas.engine (images, gc, archive, commit).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from paas.cli import engine_run
from paas.cli.context import Context, pass_ctx
from paas.cli.engine_format import history_rows, image_rows, table
from paas.core.units import human_size
from paas.engine.engine import Engine
from paas.engine.images import ImageStore
from paas.errors import PaasError, UsageError

if TYPE_CHECKING:
    from paas.engine import gc
    from paas.engine.registry import RegistryClient

# gc, archive and the registry client load inside the verbs that use them: a `paas engine`
# command is a short-lived process, and `build` should not pay for what `save` needs.


def open_engine(ctx: Context) -> Engine:
    """The Engine of the platform's engine root (the same one the deploy pipeline uses)."""
    settings = ctx.settings
    return Engine.open(settings.engine_root, settings.bridge_name, settings.subnet)


def kept_images(ctx: Context) -> set[str]:
    """Ids of the images of each app's last ``keep_releases`` releases and of its live one."""
    store = ctx.store
    kept: set[str] = set()
    for app in store.list_apps():
        releases = store.list_releases(app.name)[: ctx.settings.keep_releases]
        current = store.current_release(app.name)
        kept |= {r.image for r in releases} | ({current.image} if current else set())
    return kept


def container_usage(engine: Engine) -> gc.Usage:
    from paas.engine import gc

    return gc.container_usage(engine.images, engine.runtime.list())


@click.group("engine")
def engine() -> None:
    """The container engine: containers, images, builds, save/load, push/pull."""


engine_run.register(engine)  # run, ps, stop, kill, rm, logs, stats, inspect (containers and images)


@engine.command("images")
@click.argument("repository", required=False)
@click.option("-q", "--quiet", is_flag=True, help="Only show image ids.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show untagged images too.")
@click.option("--no-trunc", is_flag=True, help="Show full image ids.")
@pass_ctx
def images(ctx: Context, repository: str | None, quiet: bool, show_all: bool, no_trunc: bool) -> None:
    """List images (REPOSITORY[:TAG] filters by name)."""
    store = open_engine(ctx).images
    rows = image_rows(store, repository, show_all, no_trunc)
    if quiet:
        for image_id in dict.fromkeys(row[2] for row in rows):
            click.echo(image_id)
        return
    click.echo(table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"), rows))


@engine.command("tag")
@click.argument("source", metavar="SOURCE_IMAGE[:TAG]")
@click.argument("target", metavar="TARGET_IMAGE[:TAG]")
@pass_ctx
def tag(ctx: Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    store = open_engine(ctx).images
    store.tag(store.get(source), target)


@engine.command("rmi")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-f", "--force", is_flag=True, help="Remove even if a stopped container uses it.")
@pass_ctx
def rmi(ctx: Context, names: tuple[str, ...], force: bool) -> None:
    """Untag images, and remove those left without a tag and unused."""
    from paas.engine import gc

    eng = open_engine(ctx)
    usage = container_usage(eng)
    keep = kept_images(ctx)
    failed = 0
    for name in names:
        try:
            lines = gc.remove_image(
                eng.images, name, in_use=usage.in_use, force=force, running=usage.running,
                keep=keep, pinned=usage.pinned,
            )
        except PaasError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        for line in lines:
            click.echo(line)
    if failed:
        raise click.exceptions.Exit(1)


@engine.command("history")
@click.argument("name", metavar="IMAGE")
@click.option("-q", "--quiet", is_flag=True, help="Only show image ids.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@pass_ctx
def history(ctx: Context, name: str, quiet: bool, no_trunc: bool) -> None:
    """Show the steps that made an image, newest first."""
    store = open_engine(ctx).images
    rows = history_rows(store, store.get(name), no_trunc)
    if quiet:
        for row in rows:
            click.echo(row[0])
        return
    click.echo(table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), rows))


@engine.command("prune")
@click.option("-a", "--all", "prune_all", is_flag=True,
              help="Remove all images no container uses (and build cache), not only untagged ones.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed, remove nothing.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def prune(ctx: Context, prune_all: bool, dry_run: bool, force: bool) -> None:
    """Remove unused images, then the layers and snapshots nothing needs any more.

    Images a container uses, or that one of an app's kept releases needs, always stay.
    """
    from paas.engine import gc

    if not (force or dry_run):
        what = "all images without a container" if prune_all else "all dangling images"
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?",
                      abort=True)
    eng = open_engine(ctx)
    usage = container_usage(eng)
    report = gc.prune(
        eng.images, keep=kept_images(ctx), in_use=usage.in_use, all=prune_all, dry_run=dry_run,
        pinned=usage.pinned,
    )
    verb = "would delete" if dry_run else "deleted"
    if report.images:
        click.echo("Deleted Images:" if not dry_run else "Would Delete Images:")
        for image_id in report.images:
            click.echo(f"{verb}: {image_id}")
        click.echo()
    click.echo(f"{'Would free' if dry_run else 'Freed'} {report.blobs} blob(s) and "
               f"{report.snapshots} snapshot(s)")
    space = "Total reclaimable space" if dry_run else "Total reclaimed space"
    click.echo(f"{space}: {human_size(report.bytes_freed)}")


@engine.command("commit")
@click.argument("container")
@click.argument("ref", required=False, metavar="[REPOSITORY[:TAG]]")
@click.option("-c", "--change", "changes", multiple=True, metavar="LINE",
              help="A Dockerfile instruction for the config (CMD, ENV, EXPOSE, ...); repeatable.")
@click.option("-m", "--message", default="", help="Commit message (the history comment).")
@pass_ctx
def commit(ctx: Context, container: str, ref: str | None, changes: tuple[str, ...], message: str) -> None:
    """Create a new image from a container's changes."""
    from paas.engine.commit import commit_container

    eng = open_engine(ctx)
    image = commit_container(
        eng.images, eng.runtime, container, ref=ref, changes=changes, message=message
    )
    click.echo(image.id)


@engine.command("save")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this tar file.")
@pass_ctx
def save(ctx: Context, names: tuple[str, ...], output: Path) -> None:
    """Save images to a tar archive (OCI layout plus Docker's manifest.json)."""
    from paas.engine import archive

    archive.save(open_engine(ctx).images, names, output)


@engine.command("load")
@click.option("-i", "--input", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Read from this tar file instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@pass_ctx
def load(ctx: Context, source: Path | None, quiet: bool) -> None:
    """Load images from a tar archive (docker-archive or oci-archive, as written by save)."""
    from paas.engine import archive

    store = open_engine(ctx).images
    loaded = _load_stdin(store) if source is None else archive.load(store, source)
    if not quiet:
        for name in loaded:
            click.echo(f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}")


def _load_stdin(store: ImageStore) -> list[str]:
    from paas.engine import archive

    # A tar is read by member name, out of order: stdin is spooled to a file first.
    with tempfile.NamedTemporaryFile(dir=store.scratch, prefix="load-", suffix=".tar") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
        return archive.load(store, Path(spool.name))


@engine.command("build")
@click.argument("context", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Tag the image; repeatable.")
@click.option("-f", "--file", "dockerfile", type=click.Path(dir_okay=False, path_type=Path),
              help="The Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Set a build-time variable declared by ARG; repeatable.")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--target", metavar="STAGE", help="Build up to this stage.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@pass_ctx
def build(ctx: Context, context: Path, tags: tuple[str, ...], dockerfile: Path | None,
          build_args: tuple[str, ...], no_cache: bool, target: str | None, quiet: bool) -> None:
    """Build an image from a Dockerfile."""
    from paas.builders.dockerfile import registry_puller
    from paas.engine.dockerfile.builder import build_dockerfile

    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-arg wants KEY=VALUE, got {item!r}")
        args[key] = value
    eng = open_engine(ctx)
    log = (lambda line: None) if quiet else click.echo
    image = build_dockerfile(
        eng.images, eng.runtime, context, log,
        str(dockerfile.resolve()) if dockerfile else "Dockerfile",  # -f is relative to the cwd
        build_args=args, target=target, no_cache=no_cache, tag=tags[0] if tags else None,
        pull=registry_puller(eng.images, ctx.settings, log),
    )
    for ref in tags[1:]:
        log(f"Successfully tagged {eng.images.tag(image, ref)}")
    if quiet:
        click.echo(image.id)


# --- push / pull (the Registry v2 client, paas.engine.registry) ---

_INSECURE_HELP = ("Plain HTTP to the registry and its token server, like skopeo's --tls-verify=false "
                  "(meant for loopback registries; PAAS_REGISTRY_INSECURE=1 does it for PAAS_REGISTRY).")


def _registry_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option("--password-stdin", is_flag=True,
                           help="Read the password from stdin (default: $PAAS_REGISTRY_PASSWORD).")(command)
    command = click.option("-u", "--username", help="Registry user (default: $PAAS_REGISTRY_USER).")(command)
    return click.option("--insecure", is_flag=True, help=_INSECURE_HELP)(command)


def _registry_client(ctx: Context, host: str, insecure: bool, username: str | None,
                     password_stdin: bool) -> RegistryClient:
    """A client with the credentials of the flags, else of PAAS_REGISTRY_USER/PASSWORD (read here only)."""
    username = username or os.environ.get("PAAS_REGISTRY_USER") or None
    password = os.environ.get("PAAS_REGISTRY_PASSWORD", "")
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username (or PAAS_REGISTRY_USER)")
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if username and not password:
        raise UsageError(f"no password for {username!r}: pass --password-stdin or set PAAS_REGISTRY_PASSWORD")
    # Imported here: http.client and ssl would slow every other command's start.
    from paas.engine.registry import RegistryClient

    settings = ctx.settings
    return RegistryClient(
        insecure=insecure or (settings.registry_insecure and host == settings.registry),
        credentials=(username, password) if username else None,
        default_registry=settings.registry,
    )


@engine.command("push")
@click.argument("image")
@click.argument("destination", required=False)
@_registry_options
@pass_ctx
def push(ctx: Context, image: str, destination: str | None, insecure: bool, username: str | None,
         password_stdin: bool) -> None:
    """Push IMAGE to a registry, as DESTINATION ([host[:port]/]name[:tag]) when given."""
    from paas.engine.registry import parse_reference

    remote = parse_reference(destination or image, ctx.settings.registry)
    with _registry_client(ctx, remote.registry, insecure, username, password_stdin) as client:
        client.push(open_engine(ctx).images, image, remote, click.echo)


@engine.command("pull")
@click.argument("reference")
@_registry_options
@pass_ctx
def pull(ctx: Context, reference: str, insecure: bool, username: str | None, password_stdin: bool) -> None:
    """Pull [host[:port]/]name[:tag][@sha256:digest] from a registry; print the image id."""
    from paas.engine.registry import parse_reference

    remote = parse_reference(reference, ctx.settings.registry)
    with _registry_client(ctx, remote.registry, insecure, username, password_stdin) as client:
        image = client.pull(open_engine(ctx).images, remote, click.echo)
    click.echo(image.id)


COMMANDS = [engine]
