"""Layer tars: deterministic writing, overlay whiteout conversion, and safe extraction."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from paas.engine import layers
from paas.errors import ImageInvalidError, LayerUnsafeError

Entry = tuple[tarfile.TarInfo, bytes]


def reg(name: str, data: bytes = b"data", mode: int = 0o644) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def typed(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info, b""


def dev(name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3) -> Entry:
    info, _ = typed(name, kind, mode=0o666)
    info.devmajor, info.devminor = major, minor
    return info, b""


def write_tar(path: Path, entries: list[Entry]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def names(tar_path: Path) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return tar.getnames()


def tree(root: Path, dir_mtimes: bool = True) -> dict[str, tuple[int, int, int, int, int, str]]:
    """Everything about a tree that a layer must preserve. Without `dir_mtimes`, a directory's
    mtime is left out: a refused extraction creates and removes its temp dir beside dest."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            extra = os.readlink(path) if path.is_symlink() else ""
            if stat.S_ISREG(st.st_mode):
                extra = path.read_text(errors="replace")
            key = str(path.relative_to(root))
            mtime = int(st.st_mtime) if dir_mtimes or not stat.S_ISDIR(st.st_mode) else 0
            found[key] = (st.st_mode, st.st_uid, st.st_gid, mtime, st.st_rdev, extra)
    return found


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "etc" / "deep").mkdir(parents=True)
    (src / "etc" / "deep" / "file").write_text("deep")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_text("#!/bin/sh\n")
    os.lchown(src / "bin" / "tool", 1234, 5678)
    os.chmod(src / "bin" / "tool", 0o4755)
    os.link(src / "bin" / "tool", src / "bin" / "tool-link")
    (src / "bin" / "sh").symlink_to("tool")
    (src / "abs").symlink_to("/etc/passwd")
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    os.mkfifo(src / "fifo")
    for path in (src / "etc" / "deep" / "file", src / "etc" / "deep", src / "tmp"):
        os.utime(path, (1_000_000, 1_000_000))
    return src


def test_tar_directory_is_deterministic_and_numeric(sample: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.tar", tmp_path / "two.tar"
    layers.tar_directory(sample, one)
    layers.tar_directory(sample, two)
    assert one.read_bytes() == two.read_bytes()
    got = names(one)
    assert got[:3] == ["abs", "bin", "bin/sh"]
    assert "." not in got and "" not in got
    with tarfile.open(one) as tar:
        assert all(m.uname == "" and m.gname == "" for m in tar)
        tool = tar.getmember("bin/tool")
        assert (tool.uid, tool.gid, tool.mode) == (1234, 5678, 0o4755)
        assert tar.getmember("bin/tool-link").islnk()


def test_tar_directory_mtime_clamp(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "clamped.tar"
    layers.tar_directory(sample, out, mtime=42)
    with tarfile.open(out) as tar:
        assert {m.mtime for m in tar} == {42}


def test_round_trip_preserves_modes_owners_links_and_times(sample: Path, tmp_path: Path) -> None:
    layer, dest = tmp_path / "layer.tar", tmp_path / "dest"
    layers.tar_directory(sample, layer)
    layers.extract_layer(layer, dest)
    assert tree(dest) == tree(sample)
    assert os.lstat(dest / "bin" / "tool").st_ino == os.lstat(dest / "bin" / "tool-link").st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "layer.tar", "src"]


def make_upper(root: Path) -> Path:
    upper = root / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new").write_text("new")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    (upper / "opaque" / "kept").write_text("kept")
    os.setxattr(upper / "opaque", layers.OPAQUE_XATTR, b"y")
    os.mknod(upper / "gone-top", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    return upper


def test_tar_overlay_upper_writes_oci_whiteouts(tmp_path: Path) -> None:
    out = tmp_path / "diff.tar"
    layers.tar_overlay_upper(make_upper(tmp_path), out)
    assert names(out) == [
        "etc", "etc/.wh.gone", "etc/new", ".wh.gone-top",
        "opaque", "opaque/.wh..wh..opq", "opaque/kept",
    ]
    with tarfile.open(out) as tar:
        assert all(m.isreg() or m.isdir() for m in tar)
        assert tar.getmember("etc/.wh.gone").size == 0


def test_extract_turns_whiteouts_back_into_overlay_form(tmp_path: Path) -> None:
    out, dest = tmp_path / "diff.tar", tmp_path / "dest"
    upper = make_upper(tmp_path)
    layers.tar_overlay_upper(upper, out)
    layers.extract_layer(out, dest)
    for gone in (dest / "etc" / "gone", dest / "gone-top"):
        st = os.lstat(gone)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "opaque", layers.OPAQUE_XATTR) == b"y"
    assert not (dest / "opaque" / layers.OPAQUE_MARKER).exists()
    assert not list(dest.rglob(".wh.*"))
    assert sorted(tree(dest)) == sorted(tree(upper))


def test_extract_accepts_root_entry_and_implicit_parents(tmp_path: Path) -> None:
    root, _ = typed("./", tarfile.DIRTYPE, mode=0o711)
    layer = write_tar(tmp_path / "l.tar", [(root, b""), reg("a/b/c", b"x"), typed("a", b"5")])
    layers.extract_layer(layer, tmp_path / "dest")
    assert (tmp_path / "dest" / "a" / "b" / "c").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(tmp_path / "dest").st_mode) == 0o711


def test_extract_refuses_existing_dest(tmp_path: Path) -> None:
    layer = write_tar(tmp_path / "l.tar", [reg("a")])
    (tmp_path / "dest").mkdir()
    with pytest.raises(FileExistsError):
        layers.extract_layer(layer, tmp_path / "dest")


def test_garbage_is_not_a_layer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageInvalidError):
        layers.extract_layer(bad, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]


# --- the unsafe corpus ------------------------------------------------------------------------

OUTSIDE = "@OUTSIDE@"  # replaced by the absolute path of a directory next to the work dir

UNSAFE: dict[str, Callable[[str], list[Entry]]] = {
    "dotdot": lambda out: [reg("../x")],
    "dotdot-nested": lambda out: [reg("a/../../x")],
    "absolute": lambda out: [reg(f"{out}/x")],
    "absolute-root": lambda out: [reg("/x")],
    "symlink-then-file-through-it": lambda out: [
        typed("link", tarfile.SYMTYPE, out), reg("link/evil")],
    "relative-symlink-then-file-through-it": lambda out: [
        typed("link", tarfile.SYMTYPE, "../../outside"), reg("link/evil")],
    "symlink-then-dir-through-it": lambda out: [
        typed("link", tarfile.SYMTYPE, out), typed("link/sub", tarfile.DIRTYPE)],
    "symlink-then-whiteout-through-it": lambda out: [
        typed("link", tarfile.SYMTYPE, out), reg("link/.wh.file", b"")],
    "symlink-then-opaque-through-it": lambda out: [
        typed("link", tarfile.SYMTYPE, out), reg("link/.wh..wh..opq", b"")],
    "hardlink-dotdot": lambda out: [typed("h", tarfile.LNKTYPE, "../../outside/file")],
    "hardlink-absolute": lambda out: [typed("h", tarfile.LNKTYPE, f"{out}/file")],
    "hardlink-to-symlink": lambda out: [
        typed("s", tarfile.SYMTYPE, f"{out}/file"), typed("h", tarfile.LNKTYPE, "s")],
    "hardlink-through-symlink": lambda out: [
        typed("s", tarfile.SYMTYPE, out), typed("h", tarfile.LNKTYPE, "s/file")],
    "hardlink-to-unknown": lambda out: [typed("h", tarfile.LNKTYPE, "nowhere")],
    "hardlink-to-dir": lambda out: [
        typed("d", tarfile.DIRTYPE), typed("h", tarfile.LNKTYPE, "d")],
    "duplicate-file": lambda out: [reg("a"), reg("a")],
    "duplicate-dotted": lambda out: [reg("a/b"), reg("./a//b")],
    "file-then-dir": lambda out: [reg("a"), typed("a", tarfile.DIRTYPE)],
    "file-as-parent": lambda out: [reg("a"), reg("a/b")],
    "char-device": lambda out: [dev("null")],
    "whiteout-char-device": lambda out: [dev("fake-whiteout", major=0, minor=0)],
    "block-device": lambda out: [dev("sda", tarfile.BLKTYPE, 8, 0)],
    "whiteout-empty-name": lambda out: [reg(".wh.", b"")],
    "whiteout-dot": lambda out: [reg(".wh..", b"")],
    "whiteout-dotdot": lambda out: [reg(".wh...", b"")],
    "whiteout-nested-dotdot": lambda out: [reg("a/.wh...", b"")],
    "whiteout-meta": lambda out: [reg(".wh..wh.plnk", b"")],
    "whiteout-is-dir": lambda out: [typed(".wh.x", tarfile.DIRTYPE)],
    "whiteout-is-symlink": lambda out: [typed(".wh.x", tarfile.SYMTYPE, out)],
    "whiteout-and-entry": lambda out: [reg("x"), reg(".wh.x", b"")],
    "entry-after-whiteout": lambda out: [reg(".wh.x", b""), reg("x")],
    "double-opaque": lambda out: [reg("d/.wh..wh..opq", b""), reg("d/.wh..wh..opq", b"")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_layers_are_refused_and_write_nothing(tmp_path: Path, case: str) -> None:
    outside, work = tmp_path / "outside", tmp_path / "work"
    outside.mkdir()
    work.mkdir()
    (outside / "file").write_text("precious")
    layer = write_tar(work / "layer.tar", [reg("fine", b"ok"), *UNSAFE[case](str(outside))])
    before = tree(tmp_path, dir_mtimes=False)
    with pytest.raises(LayerUnsafeError):
        layers.extract_layer(layer, work / "dest")
    assert tree(tmp_path, dir_mtimes=False) == before
    assert sorted(p.name for p in work.iterdir()) == ["layer.tar"]
    assert os.lstat(outside / "file").st_nlink == 1
    assert not (tmp_path / "x").exists()


def test_tar_directory_under_a_prefix(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("x")
    out = tmp_path / "layer.tar"
    layers.tar_directory(src, out, prefix="/srv/app")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["srv", "srv/app", "srv/app/sub", "srv/app/sub/f.txt"]
    assert members["srv/app"].isdir() and members["srv"].isdir()
    dest = tmp_path / "dest"
    layers.extract_layer(out, dest)
    assert (dest / "srv/app/sub/f.txt").read_text() == "x"


def test_tar_directory_refuses_an_escaping_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        layers.tar_directory(tmp_path, tmp_path / "x.tar", prefix="../up")


# --- decompression bombs ----------------------------------------------------------------------


def _zero_bomb(path: Path, size: int) -> Path:
    """A gzip tar holding one file of ``size`` zero bytes: a few hundred KiB on disk."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.addfile(info, _Zeros(size))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n

    def readable(self) -> bool:
        return True


def test_gzip_bomb_layer_is_refused_before_it_is_written(tmp_path: Path) -> None:
    bomb = _zero_bomb(tmp_path / "bomb.tar.gz", layers.RATIO_FLOOR + (16 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(LayerUnsafeError, match="decompression bomb"):
        layers.extract_layer(bomb, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz"]


def test_layer_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    layer = write_tar(tmp_path / "big.tar", [reg("a", b"x" * 600), reg("b", b"y" * 600)])
    with pytest.raises(LayerUnsafeError, match="larger than 1000 bytes"):
        layers.extract_layer(layer, tmp_path / "dest", max_bytes=1000)
    assert not (tmp_path / "dest").exists()
    layers.extract_layer(layer, tmp_path / "dest", max_bytes=1200)
    assert (tmp_path / "dest" / "b").read_bytes() == b"y" * 600
