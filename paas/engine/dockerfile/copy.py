"""COPY and ADD: Docker's destination rules and the tree of new files that becomes the layer.

A step writes into a staging dir that mirrors the image's paths; `tar_directory` of it is the
layer. Directories the destination needs are created in staging with the image's own metadata
when the image has them (as an overlay copy-up would) and 0755 with the step's owner otherwise.
Sources come from the build context (never an ignored file), from another stage or image
(`--from`), or for ADD from a URL; ADD unpacks local tar archives at the destination.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from paas.engine.dockerfile.context import BuildContext, entry_kind
from paas.engine.dockerfile.imagefs import ImageFS, Node, split
from paas.engine.dockerfile.metadata import workdir_path
from paas.engine.dockerfile.untar import extract, is_archive
from paas.errors import BuildError

Owner = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Destination:
    path: str  # absolute, real (symlinks of the image resolved) path in the image
    is_dir: bool


def destination(fs: ImageFS, workdir: str, word: str, sources: int, where: str) -> Destination:
    """Where COPY/ADD writes: WORKDIR-relative; a dir when it ends with / or already is one."""
    path = workdir_path(workdir, word)
    trailing = word.endswith("/") or word in (".", "..") or word.endswith(("/.", "/.."))
    node = fs.node(path)
    if node is not None and node.is_dir:
        return Destination(node.path, True)
    if sources > 1 and not trailing:
        raise BuildError(
            f"{where}: when copying more than one source, the destination must be a directory "
            f"and end with a /: {word!r}"
        )
    parent = fs.node(posixpath.dirname(path))
    if parent is not None and parent.is_dir:
        path = posixpath.join(parent.path, posixpath.basename(path))
    return Destination(path, trailing)


def parse_chmod(value: str, where: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildError(f"{where}: --chmod={value}: expected an octal mode like 755") from None
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"{where}: --chmod={value}: mode out of range")
    return mode


def parse_chown(value: str, fs: ImageFS, where: str) -> Owner:
    """`user[:group]` by name (the stage's /etc/passwd and /etc/group) or number.

    Docker's rule: without a group, the gid is the same number as the uid.
    """
    user, _, group = value.partition(":")
    if not user:
        raise BuildError(f"{where}: --chown={value}: missing a user")
    uid = _lookup(fs, "/etc/passwd", user, where)
    gid = _lookup(fs, "/etc/group", group, where) if group else uid
    return uid, gid


def user_ids(fs: ImageFS, user: str) -> Owner:
    """The ids of a USER (`name`, `uid`, `name:group`) for dirs WORKDIR creates; root if unknown."""
    name, _, group = (user or "root").partition(":")
    row = _row(fs, "/etc/passwd", name)
    uid = int(name) if name.isdigit() else int(row[2]) if row else 0
    gid = int(row[3]) if row and len(row) > 3 and row[3].isdigit() else 0
    if group:
        grow = _row(fs, "/etc/group", group)
        gid = int(group) if group.isdigit() else int(grow[2]) if grow else gid
    return uid, gid


def _row(fs: ImageFS, table: str, name: str) -> list[str] | None:
    """The line of /etc/passwd or /etc/group whose name (or, for digits, id) is `name`."""
    column = 2 if name.isdigit() else 0
    for line in (fs.read_text(table) or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[column] == name and fields[2].isdigit():
            return fields
    return None


def _lookup(fs: ImageFS, table: str, name: str, where: str) -> int:
    if name.isdigit():
        return int(name)
    row = _row(fs, table, name)
    if row is None:
        kind = "user" if table.endswith("passwd") else "group"
        raise BuildError(f"{where}: --chown: no {kind} {name!r} in the image's {table}")
    return int(row[2])


class Staging:
    """The new layer's tree under `root`; image paths map to `root/<path>`."""

    def __init__(self, root: Path, fs: ImageFS, owner: Owner | None, mode: int | None) -> None:
        self.root, self.fs, self.owner, self.mode = root, fs, owner, mode

    def host(self, path: str) -> Path:
        return self.root.joinpath(*split(path))

    def ensure_dir(self, path: str) -> Path:
        """The staging dir for an image dir, created with its parents (copied-up metadata)."""
        current, parts = self.root, []
        for name in split(path):
            parts.append(name)
            current = current / name
            st = _lstat(current)
            if st is not None and stat.S_ISDIR(st.st_mode):
                continue
            if st is not None:
                os.unlink(current)
            os.mkdir(current)
            self._dir_attrs(current, self.fs.node("/" + "/".join(parts), follow=False))
        return current

    def _dir_attrs(self, host: Path, node: Node | None) -> None:
        if node is not None and node.is_dir:
            os.chown(host, node.st.st_uid, node.st.st_gid)
            os.chmod(host, stat.S_IMODE(node.st.st_mode))
            os.utime(host, ns=(node.st.st_atime_ns, node.st.st_mtime_ns))
            return
        uid, gid = self.owner or (0, 0)
        os.chown(host, uid, gid)
        os.chmod(host, 0o755)

    def put(self, target: Path, kind: str, source: Path, st: os.stat_result, keep_owner: bool) -> None:
        """Write one entry (file, dir or symlink) at `target`, replacing what staging has there."""
        owner = self.owner or ((st.st_uid, st.st_gid) if keep_owner else (0, 0))
        mode = self.mode if self.mode is not None else stat.S_IMODE(st.st_mode)
        existing = _lstat(target)
        if kind == "dir":
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(target)
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(target)
        else:
            if existing is not None:
                _remove(target, existing)
            if kind == "symlink":
                os.symlink(os.readlink(source), target)
            else:
                shutil.copyfile(source, target, follow_symlinks=False)
        os.lchown(target, *owner)
        if kind != "symlink":
            os.chmod(target, mode)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def copy_context(
    staging: Staging, context: BuildContext, rel: str, dest: Destination, *, unpack: bool,
    where: str,
) -> None:
    """One resolved context source into staging: a dir's contents, a file, or (ADD) an archive."""
    entries = context.walk_stat(rel)
    top, top_st = next(entries)
    if top.kind == "dir":
        base = staging.ensure_dir(dest.path)
        prefix = "" if top.rel == "." else top.rel + "/"
        # The directory itself is not copied, only its contents (Docker's rule).
        for entry, st in entries:
            staging.put(base / entry.rel[len(prefix):], entry.kind, entry.path, st, keep_owner=False)
        return
    if unpack and top.kind == "file" and is_archive(top.path):
        target_dir = staging.ensure_dir(dest.path)
        extract(top.path, target_dir, where, staging.owner, staging.mode)
        return
    name = posixpath.basename(top.rel)
    path = posixpath.join(dest.path, name) if dest.is_dir else dest.path
    staging.ensure_dir(posixpath.dirname(path))
    staging.put(staging.host(path), top.kind, top.path, top_st, keep_owner=False)


def copy_image(staging: Staging, source: ImageFS, paths: list[str], dest: Destination) -> None:
    """`--from` sources (absolute paths in the source image, globs already expanded)."""
    for path in paths:
        node = source.node(path)
        if node is None:
            continue
        if node.is_dir:
            base = staging.ensure_dir(dest.path)
            for rel, child in source.walk(node):
                kind = entry_kind(child.st.st_mode)
                if kind is not None:
                    staging.put(base / rel, kind, child.host, child.st, keep_owner=True)
            continue
        kind = entry_kind(node.st.st_mode)
        if kind is None:
            continue
        target = posixpath.join(dest.path, posixpath.basename(path)) if dest.is_dir else dest.path
        staging.ensure_dir(posixpath.dirname(target))
        staging.put(staging.host(target), kind, node.host, node.st, keep_owner=True)


def copy_file(staging: Staging, source: Path, name: str, dest: Destination) -> None:
    """One host file (a fetched URL) into the destination, under `name` when it is a dir."""
    target = posixpath.join(dest.path, name) if dest.is_dir else dest.path
    staging.ensure_dir(posixpath.dirname(target))
    staging.put(staging.host(target), "file", source, os.stat(source), keep_owner=False)
