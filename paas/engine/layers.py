"""Layer tars: writing them from directories and overlay upperdirs, and extracting them safely.

A layer is an uncompressed tar in OCI form: a deleted path is an empty file
``.wh.<name>`` and a directory that hides everything below it holds
``.wh..wh..opq``. On disk (snapshots, overlay upperdirs) the same facts are in
overlayfs form: a 0/0 character device and the ``trusted.overlay.opaque=y``
xattr. Extraction is the trust boundary for image data: see ``extract_layer``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paas.errors import ImageInvalidError, LayerUnsafeError

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_COPY_CHUNK = 1 << 20
# Limits on what one layer may unpack to. A real layer compresses 2-10x, a bomb 1000x: past
# RATIO_FLOOR bytes, content larger than MAX_RATIO times the file it came from is refused.
MAX_LAYER_BYTES = 16 << 30
MAX_RATIO = 200
RATIO_FLOOR = 64 << 20


def check_inflation(size: int, source_size: int, max_bytes: int = MAX_LAYER_BYTES) -> None:
    """LayerUnsafeError when ``size`` bytes of content from a ``source_size`` file is a bomb."""
    if size > max_bytes:
        raise LayerUnsafeError(f"layer is larger than {max_bytes} bytes uncompressed")
    if size > RATIO_FLOOR and size > MAX_RATIO * source_size:
        raise LayerUnsafeError(
            f"layer inflates more than {MAX_RATIO}x ({source_size} bytes to over {size}): "
            "refusing a likely decompression bomb"
        )


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below root, depth first, sorted by name, without following symlinks."""
    stack = [("", iter(_sorted_entries(str(root))))]
    while stack:
        rel, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name = f"{rel}/{entry.name}" if rel else entry.name
        yield name, entry
        if entry.is_dir(follow_symlinks=False):
            stack.append((name, iter(_sorted_entries(entry.path))))


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _tarinfo(tar: tarfile.TarFile, path: str, arcname: str, mtime: int | None) -> tarfile.TarInfo:
    info = tar.gettarinfo(path, arcname)
    info.uname = info.gname = ""
    info.mtime = int(info.mtime) if mtime is None else mtime
    return info


def _add(tar: tarfile.TarFile, path: str, arcname: str, mtime: int | None) -> None:
    info = _tarinfo(tar, path, arcname, mtime)
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


def _marker(name: str, like: os.stat_result, mtime: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    info.uid, info.gid = like.st_uid, like.st_gid
    info.mtime = int(like.st_mtime) if mtime is None else mtime
    return info


def _open_out(out: Path) -> tarfile.TarFile:
    return tarfile.open(out, "w", format=tarfile.PAX_FORMAT)


def tar_directory(src: Path, out: Path, *, mtime: int | None = None, prefix: str = "") -> None:
    """Write every entry below src (not src itself) to a deterministic tar.

    Entries are sorted; owners are numeric; sockets are skipped; ``mtime``
    clamps every timestamp (for reproducible base layers). With ``prefix`` (e.g. "app"),
    the entries go below that directory, which is added with src's owner and mode.
    """
    parts = [p for p in prefix.split("/") if p]
    if ".." in parts:
        raise ValueError(f"bad layer prefix {prefix!r}")
    with _open_out(out) as tar:
        for depth in range(1, len(parts) + 1):
            info = _tarinfo(tar, str(src), "/".join(parts[:depth]), mtime)
            tar.addfile(info)
        base = "/".join(parts)
        for name, entry in _walk(Path(src)):
            if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                continue
            _add(tar, entry.path, f"{base}/{name}" if base else name, mtime)


def tar_overlay_upper(upper: Path, out: Path, *, mtime: int | None = None) -> None:
    """Turn an overlayfs upperdir into an OCI diff tar (whiteouts and opaque dirs converted)."""
    with _open_out(out) as tar:
        for name, entry in _walk(Path(upper)):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISSOCK(st.st_mode):
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                parent, _, base = name.rpartition("/")
                wh = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base
                tar.addfile(_marker(wh, st, mtime))
                continue
            _add(tar, entry.path, name, mtime)
            if entry.is_dir(follow_symlinks=False) and _is_opaque(entry.path):
                tar.addfile(_marker(f"{name}/{OPAQUE_MARKER}", st, mtime))


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


# --- safe extraction -------------------------------------------------------------------------


@dataclass
class _Extraction:
    """State of one extraction: the private temp root and what has been written so far."""

    root: Path
    source_size: int
    max_bytes: int
    content_bytes: int = 0
    seen: set[str] = field(default_factory=set)
    dir_times: list[tuple[Path, int]] = field(default_factory=list)


def extract_layer(tar_path: Path, dest: Path, *, max_bytes: int = MAX_LAYER_BYTES) -> None:
    """Extract a layer tar into ``dest`` (which must not exist) in overlayfs form.

    Refuses, with LayerUnsafeError, any entry that could write outside dest or
    that we do not trust: absolute names, ``..``, paths through symlinks,
    hardlinks out of the layer or to non-regular files, device nodes, duplicate
    entries and malformed whiteouts. A compressed tar whose content would
    inflate past ``check_inflation``'s limits (a gzip bomb) is refused before
    the entry that crosses them is written. Work happens in a temp dir next to
    dest that is renamed into place only when the whole layer was accepted.
    """
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"extraction target exists: {dest}")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    try:
        os.chmod(tmp, 0o755)
        size = os.stat(tar_path).st_size
        _extract_all(Path(tar_path), _Extraction(tmp, size, max_bytes))
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _extract_all(tar_path: Path, state: _Extraction) -> None:
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                _extract_member(tar, member, state)
        for path, mtime in reversed(state.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)
    except tarfile.TarError as e:
        raise ImageInvalidError(f"{tar_path}: not a readable layer tar: {e}") from None
    except OSError as e:
        raise ImageInvalidError(f"{tar_path}: cannot extract layer: {e}") from None


def _parts(name: str, what: str = "entry") -> list[str]:
    if name.startswith("/"):
        raise LayerUnsafeError(f"{what} {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerUnsafeError(f"{what} {name!r} has a '..' component")
    if any("\0" in p for p in parts):
        raise LayerUnsafeError(f"{what} {name!r} has a NUL byte")
    return parts


def make_parents(
    root: Path, parts: Sequence[str], name: str, on_new: Callable[[Path], None] | None = None
) -> Path:
    """The directory under ``root`` that will hold the entry ``parts``; missing parents are
    created (mode 0755, then ``on_new(path)``), symlinks and non-directories refused with
    LayerUnsafeError: an archive entry must not write through them."""
    current = root
    for part in parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            if on_new is not None:
                on_new(current)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise LayerUnsafeError(f"entry {name!r} goes through a symlink at {part!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise LayerUnsafeError(f"entry {name!r} goes through a non-directory at {part!r}")
    return current


def _claim(state: _Extraction, key: str, name: str) -> None:
    if key in state.seen:
        raise LayerUnsafeError(f"duplicate entry {name!r} in layer")
    state.seen.add(key)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, state: _Extraction) -> None:
    parts = _parts(member.name)
    if not parts:
        if not member.isdir():
            raise LayerUnsafeError(f"root entry {member.name!r} is not a directory")
        _claim(state, "", member.name)
        _set_attrs(state, state.root, member)
        return
    parent = make_parents(state.root, parts, member.name)
    base = parts[-1]
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(state, member, parent, parts)
        return
    _claim(state, "/".join(parts), member.name)
    target = parent / base
    if os.path.lexists(target) and not (member.isdir() and _is_real_dir(target)):
        raise LayerUnsafeError(f"entry {member.name!r} conflicts with an earlier entry")
    _create(tar, member, target, state)
    if not member.islnk():
        _set_attrs(state, target, member)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _whiteout(state: _Extraction, member: tarfile.TarInfo, parent: Path, parts: list[str]) -> None:
    name, base = member.name, parts[-1]
    if not member.isreg():
        raise LayerUnsafeError(f"whiteout {name!r} is not a regular file")
    if base == OPAQUE_MARKER:
        _claim(state, "/".join(parts), name)
        os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
        return
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT_PREFIX):
        raise LayerUnsafeError(f"malformed whiteout {name!r}")
    _claim(state, "/".join(parts), name)
    hidden_key = "/".join([*parts[:-1], hidden])
    target = parent / hidden
    if hidden_key in state.seen or os.path.lexists(target):
        raise LayerUnsafeError(f"whiteout {name!r} hides an entry of the same layer")
    state.seen.add(hidden_key)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.lchown(target, member.uid, member.gid)


def _create(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, st: _Extraction) -> None:
    if member.isreg():
        st.content_bytes += member.size
        check_inflation(st.content_bytes, st.source_size, st.max_bytes)
        _write_file(tar, member, target)
    elif member.isdir():
        if not _is_real_dir(target):
            os.mkdir(target, 0o700)
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        os.link(_link_source(member, st), target, follow_symlinks=False)
    elif member.isfifo():
        os.mkfifo(target, 0o600)
    elif member.ischr() or member.isblk():
        raise LayerUnsafeError(f"entry {member.name!r} is a device node")
    else:
        raise LayerUnsafeError(f"entry {member.name!r} has unsupported type {member.type!r}")


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    src = tar.extractfile(member)
    if src is None:
        raise LayerUnsafeError(f"entry {member.name!r} has no readable content")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with src, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


def _link_source(member: tarfile.TarInfo, state: _Extraction) -> Path:
    parts = _parts(member.linkname, what=f"hardlink {member.name!r} to")
    key = "/".join(parts)
    if not parts or key not in state.seen:
        raise LayerUnsafeError(
            f"hardlink {member.name!r} points to {member.linkname!r}, not an earlier entry"
        )
    source = state.root.joinpath(*parts)
    make_parents(state.root, parts, member.linkname)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise LayerUnsafeError(f"hardlink {member.name!r} target is gone") from None
    if not stat.S_ISREG(st.st_mode):
        raise LayerUnsafeError(f"hardlink {member.name!r} points to a non-regular file")
    return source


def _set_attrs(state: _Extraction, target: Path, member: tarfile.TarInfo) -> None:
    os.lchown(target, member.uid, member.gid)
    if member.issym():
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
        return
    # chmod after chown: chown clears the setuid and setgid bits. target is never a symlink here.
    os.chmod(target, member.mode & 0o7777)
    if member.isdir():
        state.dir_times.append((target, int(member.mtime)))
    else:
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
