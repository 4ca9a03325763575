"""ADD's archive rule: a local tar (plain, gzip, bzip2 or xz) is unpacked at the destination.

The archive comes from the user's context, so extraction is a trust boundary like layer
extraction: every entry must stay below the destination (no absolute names, no ``..``, no path
through a symlink, no symlink or hardlink pointing out of it), device nodes are refused, and
content past ``check_inflation``'s limits (a decompression bomb) stops the step.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

from paas.engine.layers import check_inflation, make_parents
from paas.errors import BuildError, LayerUnsafeError

_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_USTAR_OFFSET = 257
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    """True when the file starts like a compressed stream or a tar (Docker sniffs, not the name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_USTAR_OFFSET + 8)
    except OSError:
        return False
    if head.startswith(_MAGIC):
        return _is_tar(path)
    return head[_USTAR_OFFSET : _USTAR_OFFSET + 5] == b"ustar"


def _is_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            tar.next()
        return True
    except (tarfile.TarError, OSError, EOFError):
        return False


def _inside(name: str, where: str) -> list[str]:
    """An entry name as components below the destination; BuildError when it would leave it."""
    if name.startswith("/") or "\0" in name:
        raise BuildError(f"{where}: archive entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BuildError(f"{where}: archive entry {name!r} would write outside the destination")
    return parts


def _link_inside(parts: list[str], target: str, where: str, name: str) -> None:
    """A symlink's target, read from the entry's directory, must stay below the destination."""
    if target.startswith("/"):
        raise BuildError(f"{where}: archive symlink {name!r} points to an absolute path {target!r}")
    depth = len(parts) - 1  # the link's own directory, counted from the destination
    for part in target.split("/"):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            raise BuildError(f"{where}: archive symlink {name!r} points outside the destination")


class _Extractor:
    def __init__(self, dest: Path, where: str, owner: tuple[int, int] | None, mode: int | None):
        self.dest, self.where, self.owner, self.mode = dest, where, owner, mode
        self.regular: set[str] = set()
        self.bytes = 0

    def parent(self, parts: list[str], name: str) -> Path:
        return make_parents(self.dest, parts, name, lambda path: self.attrs(path, 0o755, 0, 0))

    def attrs(self, path: Path, mode: int, uid: int, gid: int) -> None:
        uid, gid = self.owner or (uid, gid)
        os.lchown(path, uid, gid)
        if not os.path.islink(path):
            os.chmod(path, self.mode if self.mode is not None else mode & 0o7777)

    def member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, source_size: int) -> None:
        parts = _inside(member.name, self.where)
        if not parts:
            return  # the archive's "./": the destination exists already
        target = self.parent(parts, member.name) / parts[-1]
        key = "/".join(parts)
        if member.isdir():
            if not (target.is_dir() and not target.is_symlink()):
                _remove(target)
                os.mkdir(target, 0o755)
        elif member.isreg():
            self.bytes += member.size
            check_inflation(self.bytes, source_size)
            self.file(tar, member, target)
            self.regular.add(key)
        elif member.issym():
            _link_inside(parts, member.linkname, self.where, member.name)
            _remove(target)
            os.symlink(member.linkname, target)
        elif member.islnk():
            self.hardlink(member, target)
            return
        else:
            raise BuildError(f"{self.where}: archive entry {member.name!r} is a device or special file")
        self.attrs(target, member.mode, member.uid, member.gid)
        if not member.issym():
            os.utime(target, (member.mtime, member.mtime))

    def file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        src = tar.extractfile(member)
        if src is None:
            raise BuildError(f"{self.where}: archive entry {member.name!r} has no content")
        _remove(target)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with src, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)

    def hardlink(self, member: tarfile.TarInfo, target: Path) -> None:
        parts = _inside(member.linkname, self.where)
        key = "/".join(parts)
        if key not in self.regular:
            raise BuildError(
                f"{self.where}: archive hardlink {member.name!r} must point to an earlier file of it"
            )
        source = self.dest
        for part in parts:  # a later entry may have swapped a parent dir for a symlink
            source = source / part
            st = os.lstat(source)
            if stat.S_ISLNK(st.st_mode):
                raise BuildError(f"{self.where}: archive hardlink {member.name!r} goes through a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"{self.where}: archive hardlink {member.name!r} is not to a file")
        _remove(target)
        os.link(source, target, follow_symlinks=False)


def _remove(path: Path) -> None:
    """Make room for an entry: a later entry replaces an earlier file (never follows a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract(
    archive: Path, dest: Path, where: str,
    owner: tuple[int, int] | None = None, mode: int | None = None,
) -> None:
    """Unpack `archive` into the existing directory `dest`; BuildError for anything unsafe."""
    extractor = _Extractor(dest, where, owner, mode)
    size = os.stat(archive).st_size
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                extractor.member(tar, member, size)
    except LayerUnsafeError as error:
        raise BuildError(f"{where}: {archive.name}: {error}") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BuildError(f"{where}: cannot unpack {archive.name}: {error}") from None
