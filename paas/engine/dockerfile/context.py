"""The build context: the directory a Dockerfile build reads, as `.dockerignore` leaves it.

Owns what COPY/ADD may see: resolving a source (globs, path cleaning, symlinks kept inside the
root), walking the included entries in a stable order, and the content checksum the build cache keys
on (path, kind, mode, owner, size and content; never mtime).

Symlinks: a symlink named by a source (the last component, or a glob match) is followed, as Docker
does for COPY/ADD (moby/moby#39810, moby/buildkit#1260: `COPY link /x` copies the file it points
to), while symlinks found inside a copied directory are kept as symlinks. resolve() returns the
link's own path (its name is the copy's name); walk() of it gives the target's kind, owner, mode
and content, with `Entry.path` on the target. Every symlink we follow must stay inside the context,
else the source "is outside the build context"; a target the ignore rules leave out is "not found",
because Docker never sends it to the builder.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.engine.dockerfile.ignore import IgnoreRules, clean_path, compile_component, has_magic
from paas.errors import BuildError

MAX_SYMLINKS = 40  # the kernel's own limit for one path lookup
CHUNK = 1 << 20

# host path -> ((st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns), sha256 hex of the content)
DigestCache = dict[str, tuple[tuple[int, ...], str]]


class _Missing(Exception):
    """Internal: a path is not in the context (absent, ignored, or not a file, dir or symlink)."""


class _Outside(Exception):
    """Internal: resolving a path would leave the context root; args[0] is the symlink's rel path."""


def _through(exc: _Outside) -> str:
    return f" (through the symlink {exc.args[0]!r})" if exc.args and exc.args[0] != "." else ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One included file, directory or symlink of the context."""

    rel: str  # posix path relative to the context root ("." for the root)
    path: Path  # absolute path on the host (a followed source symlink: its target)
    kind: str  # "file" | "dir" | "symlink"
    mode: int  # permission bits (st_mode & 0o7777)
    uid: int
    gid: int
    size: int  # bytes of a file, length of a symlink target, 0 for a directory
    link: str  # symlink target, "" otherwise


Walked = tuple[Entry, os.stat_result]  # an entry and the stat it was made from (for the digest cache)


def entry_kind(mode: int) -> str | None:
    """An Entry's kind for a stat mode, or None for what never enters an image."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None  # sockets, fifos and devices never enter a build context


def _join(rel: str, name: str) -> str:
    return name if rel == "." else f"{rel}/{name}"


def _rel(parts: Sequence[str]) -> str:
    return "/".join(parts) or "."


def _entry(rel: str, path: Path, st: os.stat_result) -> Entry | None:
    kind = entry_kind(st.st_mode)
    if kind is None:
        return None
    link = os.readlink(path) if kind == "symlink" else ""
    size = 0 if kind == "dir" else st.st_size
    return Entry(rel, path, kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, size, link)


def _nonempty(entries: Iterator[Walked]) -> Iterator[Walked]:
    """`entries` unchanged, or _Missing when there are none (checked now, the rest stays lazy)."""
    first = next(entries, None)
    if first is None:
        raise _Missing
    return itertools.chain((first,), entries)


def _source_parts(source: str) -> list[str] | None:
    """A COPY source as clean components (absolute means from the root); None when it climbs out."""
    cleaned = clean_path(source.lstrip("/"))
    if cleaned == ".." or cleaned.startswith("../"):
        return None
    return [] if cleaned == "." else cleaned.split("/")


class BuildContext:
    """A context directory and its ignore rules; what COPY and ADD may read."""

    __slots__ = ("root", "rules", "_digests")

    def __init__(self, root: Path, rules: IgnoreRules | None = None, *,
                 digests: DigestCache | None = None) -> None:
        self.root = root.resolve()
        self.rules = rules if rules is not None else IgnoreRules()
        # sha256 of files already read, valid while (dev, ino, size, mtime, ctime) stay the same;
        # mtime only decides whether to re-read, it never enters a checksum. ctime cannot be set
        # from user space, so a rewrite that restores mtime is still noticed.
        self._digests: DigestCache = digests if digests is not None else {}

    @classmethod
    def open(cls, root: Path, dockerfile: str = "Dockerfile", *,
             digests: DigestCache | None = None) -> BuildContext:
        """The context at `root` with its ignore rules; pass the same `digests` dict to several
        contexts (successive builds of one app) to skip re-reading files that did not change."""
        if not root.is_dir():
            raise BuildError(f"build context {str(root)!r} is not a directory")
        return cls(root, IgnoreRules.load(root, dockerfile), digests=digests)

    # -- resolve ---------------------------------------------------------------------------------

    def resolve(self, source: str, where: str) -> list[str]:
        """A COPY/ADD source (Go filepath.Match globs per component) -> sorted rel paths ("." = root)."""
        parts = _source_parts(source)
        if parts is None:
            raise BuildError(f"{where}: {source!r} is outside the build context")
        try:
            found = self._expand(parts)
        except _Outside as exc:
            raise BuildError(f"{where}: {source!r} is outside the build context{_through(exc)}") from None
        except OSError as exc:
            raise BuildError(f"{where}: cannot read {source!r} in the build context: {exc}") from None
        except ValueError as exc:
            raise BuildError(f"{where}: bad pattern {source!r}: {exc}") from None
        if not found:
            raise BuildError(f"{where}: {source!r} not found in the build context")
        return sorted(set(found))

    def _expand(self, parts: Sequence[str]) -> list[str]:
        first = next((i for i, name in enumerate(parts) if has_magic(name)), None)
        if first is None:
            return [_rel(parts)] if self._present(parts) else []
        try:
            self._locate(parts[:first], follow_last=True)  # a literal prefix that leaves is an error
        except _Missing:
            return []
        candidates: list[list[str]] = [list(parts[:first])]
        for name in parts[first:]:
            if not has_magic(name):
                candidates = [c + [name] for c in candidates]
                continue
            matcher = compile_component(name)
            candidates = [c + [n] for c in candidates for n in self._names(c) if matcher(n)]
        return [_rel(c) for c in candidates if self._matched(c)]

    def _matched(self, parts: Sequence[str]) -> bool:
        """Whether a path a glob produced exists. A glob does not look through a symlink that leaves
        the context (that directory holds nothing of the context; Docker, which resolves links inside
        the root, finds nothing there either), but a match that is itself such a symlink is an error."""
        try:
            self._locate(parts[:-1], follow_last=True)
        except (_Missing, _Outside):
            return False
        return self._present(parts)

    def _names(self, parts: Sequence[str]) -> list[str]:
        """The sorted names in the directory at `parts` (symlinks followed); [] when it is none."""
        try:
            real, st = self._locate(parts, follow_last=True)
        except (_Missing, _Outside):
            return []
        rel = _rel(real)
        if not stat.S_ISDIR(st.st_mode) or (
                self.rules.ignored(rel) and not self.rules.may_include_below(rel)):
            return []
        return sorted(os.listdir(self.root.joinpath(*real)), key=os.fsencode)

    def _present(self, parts: Sequence[str]) -> bool:
        """True when the path exists in the context as the ignore rules leave it."""
        try:
            self._open(parts)
        except _Missing:
            return False
        return True

    def _open(self, parts: Sequence[str]) -> tuple[Entry, os.stat_result, Iterator[Walked]]:
        """The entry at `parts` (a source symlink followed) and its included children (lazy).

        Raises _Missing when the ignore rules leave nothing there: an ignored directory still
        exists when an exception brings back something below it.
        """
        real, st = self._locate(parts, follow_last=True)
        path, real_rel = self.root.joinpath(*real), _rel(real)
        top = _entry(_rel(parts), path, st)
        if top is None:
            raise _Missing
        below = self._children(path, top.rel, real_rel) if top.kind == "dir" else iter(())
        if self.rules.ignored(real_rel):
            below = _nonempty(below)
        return top, st, below

    def _locate(self, parts: Sequence[str], follow_last: bool) -> tuple[list[str], os.stat_result]:
        """The real components (symlinks expanded, kept inside the root) and lstat of `parts`."""
        real: list[str] = []
        pending = list(reversed(parts))
        hops, via = 0, "."  # `via`: the last symlink followed, named in the error when we climb out
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not real:
                    raise _Outside(via)
                real.pop()
                continue
            try:
                st = os.lstat(self.root.joinpath(*real, name))
            except (FileNotFoundError, NotADirectoryError):
                raise _Missing from None
            if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINKS or self.rules.ignored(_rel([*real, name])):
                    raise _Missing
                via = _rel([*real, name])
                real = self._follow(real, name, pending)
                continue
            real.append(name)
            if pending and not stat.S_ISDIR(st.st_mode):
                raise _Missing
        # Stat the end again: the last step may have been a `..` or a symlink that resolved to a dir.
        return real, os.lstat(self.root.joinpath(*real))

    def _follow(self, real: list[str], name: str, pending: list[str]) -> list[str]:
        """Queue a symlink's target on `pending`; returns the directory it is relative to."""
        target = os.readlink(self.root.joinpath(*real, name))
        if target.startswith("/"):
            target = clean_path(target)
            root = str(self.root)
            if target != root and not target.startswith(root.rstrip("/") + "/"):
                raise _Outside(_rel([*real, name]))
            target, real = target[len(root):], []
        pending.extend(reversed(target.split("/")))
        return list(real)

    # -- walk --------------------------------------------------------------------------------------

    def walk(self, rel: str) -> Iterator[Entry]:
        """The entry at rel and, for a dir, every included entry below it (parents first, sorted)."""
        for entry, _ in self.walk_stat(rel):
            yield entry

    def walk_stat(self, rel: str) -> Iterator[Walked]:
        """walk(), each entry with the stat it was made from (of `Entry.path`, never a symlink
        followed)."""
        parts = _source_parts(rel)
        try:
            if parts is None:
                raise _Outside(".")
            top, st, below = self._open(parts)
            yield top, st
            yield from below
        except _Outside as exc:
            raise BuildError(f"{rel!r} is outside the build context{_through(exc)}") from None
        except _Missing:
            raise BuildError(f"{rel!r} not found in the build context") from None
        except OSError as exc:
            raise BuildError(f"cannot read {rel!r} in the build context: {exc}") from None

    def _children(self, path: Path, rel: str, real: str) -> Iterator[Walked]:
        """Included entries below the directory `path`; `real` is its own context path for the rules."""
        with os.scandir(path) as listing:
            items = sorted(listing, key=lambda item: os.fsencode(item.name))
        for item in items:
            child_real = _join(real, item.name)
            st = item.stat(follow_symlinks=False)
            entry = _entry(_join(rel, item.name), Path(item.path), st)
            if entry is None:
                continue
            ignored = self.rules.ignored(child_real)
            if entry.kind != "dir":
                if not ignored:
                    yield entry, st
                continue
            if ignored and not self.rules.may_include_below(child_real):
                continue
            below = self._children(entry.path, entry.rel, child_real)
            if ignored:
                try:
                    below = _nonempty(below)
                except _Missing:
                    continue
            yield entry, st
            yield from below

    # -- checksum ----------------------------------------------------------------------------------

    def checksum(self, rels: Sequence[str]) -> str:
        """"sha256:<hex>" over walk() of each rel: path, kind, mode, uid, gid, size, content."""
        digest = hashlib.sha256()
        for rel in rels:
            digest.update(b"source\0" + os.fsencode(rel) + b"\0")
            for entry, st in self.walk_stat(rel):
                content = self._file_digest(entry.path, st) if entry.kind == "file" else entry.link
                # NUL ends every field: names and link targets cannot hold one, so no two trees collide.
                record = (f"{entry.rel}\0{entry.kind}\0{entry.mode:o}\0{entry.uid}\0{entry.gid}\0"
                          f"{entry.size}\0{content}\0")
                digest.update(record.encode("utf-8", "surrogateescape"))
        return "sha256:" + digest.hexdigest()

    def _file_digest(self, path: Path, st: os.stat_result) -> str:
        key = str(path)
        validator = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._digests.get(key)
        if cached is not None and cached[0] == validator:
            return cached[1]
        value = _sha256_file(path)
        self._digests[key] = (validator, value)
        return value


def _sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in CHUNK pieces.

    Plain fds, not file objects: most context files are small and the per-file overhead dominates.
    O_NOFOLLOW because the walk saw a regular file here; a symlink swapped in must not be read.
    """
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    finally:
        os.close(fd)
    return digest.hexdigest()
