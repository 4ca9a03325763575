"""App repositories and `git push` over the real SSH server, hook, queue and worker."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from testkit import SSHTarget, child_env, git, make_repo

from paas.config import Settings
from paas.errors import GitError
from paas.git.repos import ensure_repo, export_rev, safe_extract
from paas.store import Store

LINE_TIMEOUT_S = 60.0


def remote_lines(stderr: str) -> list[str]:
    """The `remote:` lines of git's output, without git's padding."""
    prefix = "remote: "
    return [ln[len(prefix):].rstrip() for ln in stderr.splitlines() if ln.startswith(prefix)]


def push(
    target: SSHTarget, work: Path, refspec: str, app: str = "shop"
) -> subprocess.CompletedProcess:
    return git(work, "push", target.url(app), refspec, env=target.git_env, check=False)


def bare_ref(settings: Settings, app: str, ref: str) -> str | None:
    done = git(settings.repos_dir, "--git-dir", f"{app}.git", "rev-parse", "--verify", "-q", ref,
               check=False)
    return done.stdout.strip() or None


def test_ensure_repo_creates_a_bare_repo_with_the_hook(settings: Settings) -> None:
    repo = ensure_repo(settings, "shop")
    assert repo == settings.repos_dir / "shop.git"
    assert (repo / "HEAD").read_text().strip() == "ref: refs/heads/main"
    hook = repo / "hooks" / "pre-receive"
    assert os.access(hook, os.X_OK)
    assert f"exec {sys.executable} -m paas.cli.main git-hook" in hook.read_text()
    assert ensure_repo(settings, "shop") == repo  # idempotent


def test_export_rev_writes_the_tree(settings: Settings, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", {"app.py": "print(1)\n", "bin/run": "#!/bin/sh\n"})
    (work / "bin" / "run").chmod(0o755)
    git(work, "commit", "-q", "-am", "exec bit")
    repo = ensure_repo(settings, "shop")
    git(work, "push", "-q", str(repo), "main:stored", env=child_env(settings))
    sha = git(work, "rev-parse", "HEAD").stdout.strip()
    dest = tmp_path / "out"
    export_rev(settings.repos_dir / "shop.git", sha, dest)
    assert (dest / "app.py").read_text() == "print(1)\n"
    assert os.access(dest / "bin" / "run", os.X_OK)
    with pytest.raises(GitError, match="cannot export"):
        export_rev(settings.repos_dir / "shop.git", "0" * 40, tmp_path / "none")


def _tar(*members: tarfile.TarInfo) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "a/../../evil"])
def test_safe_extract_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.size = 1
    with pytest.raises(GitError, match="unsafe"):
        safe_extract(_tar(member), tmp_path / "dest")
    assert not (tmp_path / "evil").exists()


def test_safe_extract_refuses_links_out(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(GitError, match="unsafe"):
        safe_extract(_tar(link), tmp_path / "dest")


def test_push_to_other_branch_is_stored_not_deployed(
    ssh_server: SSHTarget, settings: Settings, store: Store, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work", {"README": "hi\n"})
    done = push(ssh_server, work, "main:feature")
    assert done.returncode == 0, done.stderr
    assert ("-----> Branch feature is stored but not deployed: push main or master to deploy."
            in remote_lines(done.stderr))
    assert bare_ref(settings, "shop", "refs/heads/feature")
    assert [a.name for a in store.list_apps()] == ["shop"]


def test_push_of_an_empty_tree_is_rejected(
    ssh_server: SSHTarget, settings: Settings, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work")
    done = push(ssh_server, work, "main")
    assert done.returncode != 0
    assert remote_lines(done.stderr) == ["-----> Push rejected: the repository is empty"]
    assert bare_ref(settings, "shop", "refs/heads/main") is None


def test_push_without_redis_is_rejected_clearly(ssh_server: SSHTarget, tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work", {"README": "hi\n"})
    done = push(ssh_server, work, "main")
    assert done.returncode != 0
    assert any("Push rejected: cannot reach redis at unix://" in ln
               for ln in remote_lines(done.stderr))


def _spec(work: Path, **spec: object) -> None:
    (work / "fake-deploy.json").write_text(json.dumps(spec))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "spec")


def _read_lines(proc: subprocess.Popen, out: queue.Queue) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        out.put(line)
    out.put(None)


def _until(lines: queue.Queue, needle: str, seen: list[str]) -> None:
    while True:
        line = lines.get(timeout=LINE_TIMEOUT_S)
        assert line is not None, f"output ended before {needle!r}: {seen}"
        seen.append(line)
        if needle in line:
            return


@pytest.mark.usefixtures("fake_pipeline_worker")
def test_push_to_main_streams_live_and_deploys(
    ssh_server: SSHTarget, settings: Settings, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    work = make_repo(tmp_path / "work", {"Procfile": "web: true\n"})
    _spec(work, lines=["-----> Building", "       waiting for go"], wait_for=str(go),
          after=["       built"], version=3)
    proc = subprocess.Popen(
        ["git", "push", ssh_server.url("shop"), "main"], cwd=work, env=ssh_server.git_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    seen: list[str] = []
    # The job is blocked until `go` exists: this line can only arrive if output is live.
    _until(lines, "waiting for go", seen)
    go.touch()
    assert proc.wait(timeout=LINE_TIMEOUT_S) == 0, seen
    while (line := lines.get(timeout=LINE_TIMEOUT_S)) is not None:
        seen.append(line)
    got = remote_lines("".join(seen))
    sha = git(work, "rev-parse", "HEAD").stdout.strip()
    assert got[0] == f"-----> Deploying shop ({sha[:7]})..."
    assert "       files: Procfile fake-deploy.json" in got
    assert got[-3:] == ["       waiting for go", "       built", "-----> Released v3"]
    assert bare_ref(settings, "shop", "refs/heads/main") == sha
    assert list(settings.builds_dir.iterdir()) == []  # the job removed its source dir

    clone = git(tmp_path, "clone", "-q", ssh_server.url("shop"), "clone", env=ssh_server.git_env,
                check=False)
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "clone" / "Procfile").exists()

    deleted = push(ssh_server, work, ":main")
    assert deleted.returncode != 0
    assert ("-----> Push rejected: deleting the deploy branch main is not allowed"
            in remote_lines(deleted.stderr))
    assert bare_ref(settings, "shop", "refs/heads/main") == sha


@pytest.mark.usefixtures("fake_pipeline_worker")
def test_failed_deploy_rejects_the_push(
    ssh_server: SSHTarget, settings: Settings, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work", {"Procfile": "web: true\n"})
    _spec(work, lines=["-----> Building"], fail="the web process did not answer")
    done = push(ssh_server, work, "main:master")
    assert done.returncode != 0
    got = remote_lines(done.stderr)
    assert "-----> Building" in got
    assert got[-1] == "-----> Push rejected: the web process did not answer"
    assert bare_ref(settings, "shop", "refs/heads/master") is None
