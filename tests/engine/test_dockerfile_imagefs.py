"""The merged, mount-free view of snapshot dirs: whiteouts, opaque dirs, symlinks kept inside."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from paas.engine.dockerfile.imagefs import ImageFS
from paas.engine.layers import OPAQUE_XATTR


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _layers(tmp_path: Path) -> ImageFS:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in ("etc", "data/old", "opaque", "lib"):
        (lower / d).mkdir(parents=True)
    (lower / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (lower / "etc/gone").write_text("x")
    (lower / "data/old/f").write_text("old")
    (lower / "opaque/hidden").write_text("h")
    (lower / "lib/real").write_text("r")
    (lower / "file-becomes-dir").write_text("f")
    for d in ("etc", "data/new", "opaque", "file-becomes-dir"):
        (upper / d).mkdir(parents=True)
    _whiteout(upper / "etc/gone")
    (upper / "data/new/f").write_text("new")
    os.setxattr(upper / "opaque", OPAQUE_XATTR, b"y")
    (upper / "opaque/visible").write_text("v")
    (upper / "abs-link").symlink_to("/lib/real")
    (upper / "escape").symlink_to("../../../../etc")
    (upper / "file-becomes-dir/inside").write_text("i")
    return ImageFS([upper, lower])


def test_merged_view(tmp_path: Path) -> None:
    fs = _layers(tmp_path)
    root = fs.node("/")
    assert root is not None
    assert fs.listdir(root) == ["abs-link", "data", "escape", "etc", "file-becomes-dir", "lib", "opaque"]
    etc = fs.node("/etc")
    assert etc is not None and fs.listdir(etc) == ["passwd"]  # the whiteout hides "gone"
    assert fs.node("/etc/gone") is None
    assert fs.read_text("/etc/passwd", ) == "root:x:0:0::/root:/bin/sh\n"
    data = fs.node("/data")
    assert data is not None and [rel for rel, _ in fs.walk(data)] == ["new", "new/f", "old", "old/f"]
    opaque = fs.node("/opaque")
    assert opaque is not None and fs.listdir(opaque) == ["visible"]
    changed = fs.node("/file-becomes-dir")
    assert changed is not None and changed.is_dir and fs.listdir(changed) == ["inside"]


def test_symlinks_resolve_inside_the_image(tmp_path: Path) -> None:
    fs = _layers(tmp_path)
    assert fs.read_text("/abs-link") == "r"
    link = fs.node("/abs-link", follow=False)
    assert link is not None and stat.S_ISLNK(link.st.st_mode)
    # ../../../../etc climbs to the image root, never to the host's /etc.
    escaped = fs.node("/escape/passwd")
    assert escaped is not None and escaped.path == "/etc/passwd"
    assert fs.node("/lib/../etc/passwd") is not None
    assert fs.glob("/*/f") == []
    assert fs.glob("/data/*/f") == ["/data/new/f", "/data/old/f"]
    assert fs.glob("/etc/pass*") == ["/etc/passwd"]


def test_empty_image(tmp_path: Path) -> None:
    fs = ImageFS([])
    assert fs.node("/") is None and fs.node("/etc/passwd") is None and fs.read_text("/x") is None
