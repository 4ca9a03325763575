"""A read-only view of an image's filesystem, merged from its snapshot dirs without mounting.

Applies overlayfs' rules to the snapshot dirs (top-most first): a 0/0 character device is a
whiteout, the ``trusted.overlay.opaque`` xattr hides lower layers, a non-directory hides
everything below it. Symlinks are followed inside the image root, never on the host. The
builder uses it to read /etc/passwd for ``--chown``, to see whether a destination exists, and
to copy files out of a stage or image for ``COPY --from``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.engine.dockerfile.ignore import compile_component, has_magic
from paas.engine.layers import OPAQUE_XATTR
from paas.errors import BuildError

MAX_SYMLINKS = 40


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Node:
    """One path of the merged tree: its real (symlink-free) path and its copies, top-most first."""

    path: str  # absolute path inside the image
    layers: tuple[Path, ...]  # host paths of the entry in each layer it is visible from
    st: os.stat_result  # lstat of the top-most copy

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def host(self) -> Path:
        return self.layers[0]


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _join(parts: Sequence[str]) -> str:
    return "/" + "/".join(parts)


class ImageFS:
    """The merged filesystem of snapshot dirs, given top-most first (overlayfs lowerdir order)."""

    def __init__(self, lowerdirs: Sequence[Path]) -> None:
        self.lowerdirs = tuple(Path(d) for d in lowerdirs)

    def node(self, path: str, follow: bool = True) -> Node | None:
        """The entry at `path` (symlinks in parents always followed, the last one if `follow`)."""
        parts, hops = split(path), 0
        real: list[str] = []
        dirs: list[Path] = list(self.lowerdirs)
        node: Node | None = None
        while parts:
            name = parts.pop(0)
            if name == "..":
                real = real[:-1]
                parts, real, dirs = real + parts, [], list(self.lowerdirs)
                continue
            node = self._child(dirs, [*real, name])
            if node is None:
                return None
            if stat.S_ISLNK(node.st.st_mode) and (parts or follow):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise BuildError(f"too many levels of symbolic links in the image at {path!r}")
                target = os.readlink(node.host)
                base = [] if target.startswith("/") else real
                parts, real, dirs = [*base, *split(target), *parts], [], list(self.lowerdirs)
                node = None
                continue
            if parts and not node.is_dir:
                return None
            real.append(name)
            dirs = list(node.layers)
        if node is None:  # the root itself
            return self._root()
        return node

    def _root(self) -> Node | None:
        if not self.lowerdirs:
            return None
        layers: list[Path] = []
        for layer in self.lowerdirs:
            layers.append(layer)
            if _is_opaque(layer):
                break
        return Node("/", tuple(layers), os.lstat(self.lowerdirs[0]))

    @staticmethod
    def _child(dirs: Sequence[Path], parts: Sequence[str]) -> Node | None:
        """The entry `parts[-1]` of a directory whose copies are `dirs`, per overlayfs."""
        found: list[Path] = []
        top: os.stat_result | None = None
        for directory in dirs:
            candidate = directory / parts[-1]
            st = _lstat(candidate)
            if st is None:
                continue
            if _is_whiteout(st) or (top is not None and not stat.S_ISDIR(st.st_mode)):
                break
            found.append(candidate)
            top = top or st
            if not stat.S_ISDIR(st.st_mode) or _is_opaque(candidate):
                break
        if top is None:
            return None
        return Node(_join(parts), tuple(found), top)

    def listdir(self, node: Node) -> list[str]:
        """The names in a directory node, merged over its layers, sorted."""
        seen: set[str] = set()
        hidden: set[str] = set()
        for directory in node.layers:
            for name in os.listdir(directory):
                if name in seen or name in hidden:
                    continue
                st = _lstat(directory / name)
                if st is not None and _is_whiteout(st):
                    hidden.add(name)
                else:
                    seen.add(name)
        return sorted(seen)

    def walk(self, node: Node) -> Iterator[tuple[str, Node]]:
        """Every entry below a directory node as (path relative to it, node), parents first."""
        for name in self.listdir(node):
            child = self._child(node.layers, [*split(node.path), name])
            if child is None:
                continue
            yield name, child
            if child.is_dir:
                for rel, below in self.walk(child):
                    yield f"{name}/{rel}", below

    def read_text(self, path: str) -> str | None:
        """A small file's text (e.g. /etc/passwd), or None when it is absent or not a file."""
        node = self.node(path)
        if node is None or not stat.S_ISREG(node.st.st_mode):
            return None
        return node.host.read_text(encoding="utf-8", errors="replace")

    def glob(self, pattern: str) -> list[str]:
        """Absolute image paths matching `pattern` (Go filepath.Match per component), sorted."""
        found = [""]
        for name in split(pattern):
            if not has_magic(name):
                found = [f"{p}/{name}" for p in found]
                continue
            match = compile_component(name)
            nodes = ((p, self.node(p or "/")) for p in found)
            found = [f"{p}/{n}" for p, d in nodes if d and d.is_dir for n in self.listdir(d) if match(n)]
        return sorted(p or "/" for p in found if self.node(p or "/") is not None)
