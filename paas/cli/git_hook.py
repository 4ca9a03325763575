"""git-hook: the pre-receive hook of app repositories; deploys pushes to main or master."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from paas.cli.context import Context, pass_ctx
from paas.config import Settings
from paas.core.names import deploy_branch, validate_app_name
from paas.errors import GitError, PaasError
from paas.git.repos import export_rev, is_empty_tree
from paas.jobs.queue import connect, enqueue_deploy, job_pending, job_queued, worker_counts
from paas.jobs.stream import LogStream

ZERO_SHA = frozenset("0")
FOLLOW_TIMEOUT_S = 35 * 60
PUSH_USER_ENV = "PAAS_PUSH_USER"  # set by the SSH server (paas.ssh.session) for the hook


@dataclass(frozen=True, slots=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deleted(self) -> bool:
        return set(self.new) <= ZERO_SHA


def say(text: str) -> None:
    """One line to the pusher: git relays hook output as `remote: ...`; flush keeps it live."""
    click.echo(text)
    sys.stdout.flush()


def parse_updates(stream: TextIO) -> list[RefUpdate]:
    updates = []
    for line in stream:
        parts = line.split()
        if len(parts) != 3:
            raise GitError(f"unexpected hook input line: {line.strip()!r}")
        updates.append(RefUpdate(*parts))
    return updates


def app_of_repo(settings: Settings, repo: Path) -> str:
    """The app a repository belongs to: `<app>.git` directly under settings.repos_dir."""
    if repo.parent != settings.repos_dir.resolve() or repo.suffix != ".git":
        raise GitError(f"{repo} is not an app repository under {settings.repos_dir}")
    return validate_app_name(repo.name[: -len(".git")])


def pre_receive(settings: Settings, repo: Path, updates: list[RefUpdate]) -> int:
    """Check every ref, then deploy the one main/master update; returns the hook's exit code."""
    app = app_of_repo(settings, repo)
    deploys = [u for u in updates if deploy_branch(u.ref)]
    for update in updates:
        if not deploy_branch(update.ref):
            branch = update.ref.removeprefix("refs/heads/")
            say(f"-----> Branch {branch} is stored but not deployed: "
                "push main or master to deploy.")
    for update in deploys:
        if update.deleted:
            return reject(f"deleting the deploy branch {deploy_branch(update.ref)} is not allowed")
    if len(deploys) > 1:
        return reject("push either main or master, not both at once")
    if not deploys:
        return 0
    return deploy(settings, repo, app, deploys[0].new)


def deploy(settings: Settings, repo: Path, app: str, sha: str) -> int:
    if is_empty_tree(repo, sha):
        return reject("the repository is empty")
    say(f"-----> Deploying {app} ({sha[:7]})...")
    source = export(settings, repo, app, sha)
    try:
        stream_id = enqueue_deploy(settings, app, sha, str(source),
                                   user=os.environ.get(PUSH_USER_ENV, ""))
    except PaasError:
        shutil.rmtree(source, ignore_errors=True)
        raise
    return follow(settings, stream_id)


def export(settings: Settings, repo: Path, app: str, sha: str) -> Path:
    settings.builds_dir.mkdir(parents=True, exist_ok=True)
    source = Path(tempfile.mkdtemp(prefix=f"{app}-{sha[:7]}-", dir=settings.builds_dir))
    try:
        export_rev(repo, sha, source)
    except PaasError:
        shutil.rmtree(source, ignore_errors=True)
        raise
    return source


def follow(settings: Settings, stream_id: str) -> int:
    redis = connect(settings)
    workers, idle = worker_counts(redis)
    if workers == 0:
        say("       No deploy worker is running yet; waiting for one to pick up this push.")
    elif idle == 0 and job_queued(redis, stream_id):
        say(f"       All {workers} deploy workers are busy with other pushes; "
            "waiting for a free one.")
    stream = LogStream(redis, stream_id)
    for line in stream.follow(FOLLOW_TIMEOUT_S, alive=lambda: job_pending(redis, stream_id)):
        say(line)
    ok, message = stream.result
    if not ok:
        return reject(message)
    say(f"-----> {message}")
    return 0


def reject(reason: str) -> int:
    say(f"-----> Push rejected: {reason}")
    return 1


@click.command("git-hook", hidden=True)
@click.argument("args", nargs=-1)
@pass_ctx
def git_hook(ctx: Context, args: tuple[str, ...]) -> None:
    """Run as the pre-receive hook of an app repository (git passes ref updates on stdin)."""
    repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
    try:
        code = pre_receive(ctx.settings, repo, parse_updates(sys.stdin))
    except PaasError as exc:
        code = reject(str(exc))
    click.get_current_context().exit(code)


COMMANDS = [git_hook]
