"""Bare app repositories: create one per app, install its hook, export the tree of a commit."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from paas.config import Settings
from paas.core.names import validate_app_name
from paas.errors import GitError

HOOK_TEMPLATE = Path(__file__).resolve().parents[2] / "hooks" / "pre-receive"
HOOK_PYTHON_PLACEHOLDER = "@PYTHON@"
INITIAL_BRANCH = "main"
GIT_TIMEOUT_S = 120.0


def repo_path(settings: Settings, app: str) -> Path:
    return settings.repos_dir / f"{validate_app_name(app)}.git"


def ensure_repo(settings: Settings, app: str) -> Path:
    """Create the app's bare repository if missing; (re)install its pre-receive hook."""
    path = repo_path(settings, app)
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", "-b", INITIAL_BRANCH, str(path)])
    install_hook(path)
    return path


def install_hook(repo: Path) -> None:
    """Write the pre-receive hook with this interpreter's absolute path, atomically."""
    try:
        template = HOOK_TEMPLATE.read_text(encoding="utf-8")
    except OSError as exc:
        raise GitError(f"cannot read the hook template {HOOK_TEMPLATE}: {exc}") from None
    text = template.replace(HOOK_PYTHON_PLACEHOLDER, shlex.quote(sys.executable))
    hooks = repo / "hooks"
    hooks.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=hooks, prefix=".pre-receive.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, hooks / "pre-receive")
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GitError(f"cannot install the hook in {repo}: {exc}") from None


def is_empty_tree(repo: Path, sha: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the commit's tree has no entries (works on quarantined objects too)."""
    out = _git(["--git-dir", str(repo), "ls-tree", "--name-only", sha], env=env)
    return out.strip() == ""


def export_rev(
    repo: Path, sha: str, dest: Path, env: Mapping[str, str] | None = None
) -> None:
    """Extract the tree of commit `sha` into `dest`, refusing entries that escape it.

    `env` defaults to this process's environment, which inside a pre-receive hook carries
    GIT_OBJECT_DIRECTORY/GIT_ALTERNATE_OBJECT_DIRECTORIES so quarantined objects are found.
    """
    dest.mkdir(parents=True, exist_ok=True)
    argv = ["git", "--git-dir", str(repo), "archive", "--format=tar", sha]
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=_env(env))
        except OSError as exc:
            raise GitError(f"cannot run git: {exc}") from None
        assert proc.stdout is not None
        try:
            safe_extract(proc.stdout, dest)
            proc.stdout.read()  # the tar's trailing padding: let git finish writing and exit
        except GitError:
            proc.kill()
            if proc.wait() <= 0:
                raise
            # else git failed first and broke the stream: report git's own message below
        finally:
            proc.stdout.close()
        code = proc.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise GitError(f"cannot export {sha[:12]}: {message or f'git exited {code}'}")


def safe_extract(fileobj: IO[bytes], dest: Path) -> None:
    """Extract a tar stream into dest; GitError on an entry that would land outside it."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for member in tar:
                _check_name(member.name)
                # The "data" filter refuses '..', links out of dest, devices and set-id bits.
                tar.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise GitError(f"refusing to export an unsafe entry: {exc}") from None
    except (tarfile.TarError, OSError) as exc:
        raise GitError(f"cannot export the pushed tree: {exc}") from None


def _check_name(name: str) -> None:
    # The data filter would strip a leading '/' and carry on; a tree never holds one.
    if name.startswith("/") or ".." in Path(name).parts:
        raise GitError(f"refusing to export an unsafe entry: {name!r}")


def _git(args: list[str], env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, env=_env(env),
            timeout=GIT_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def _env(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)
