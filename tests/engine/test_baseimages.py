"""The base images, built for real from the host's busybox and the Debian mirror."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.engine import baseimages
from paas.engine.images import ImageStore


def in_rootfs(lowerdirs: list[Path], work: Path, *argv: str) -> str:
    """Run argv chrooted in an overlay of lowerdirs, in a private mount namespace."""
    for name in ("upper", "work", "merged"):
        (work / name).mkdir(parents=True, exist_ok=True)
    script = (
        'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"'
        ' && shift 2 && chroot "$0" "$@"'
    )
    lower = ":".join(map(str, lowerdirs))
    merged = str(work / "merged")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, merged,
         lower, str(work), *argv],
        capture_output=True, text=True, check=True,
    )
    assert not os.path.ismount(merged)
    return result.stdout


@pytest.fixture(scope="module")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, list[str]]:
    store = ImageStore(tmp_path_factory.mktemp("busybox") / "images")
    log: list[str] = []
    baseimages.build_busybox(store, log.append)
    return store, log


def test_busybox_image(busybox_store: tuple[ImageStore, list[str]]) -> None:
    store, log = busybox_store
    image = store.get("busybox")
    assert image.config.cmd == ("sh",)
    assert len(image.diff_ids) == 1
    fs = store.lowerdirs(image)[0]
    assert os.readlink(fs / "bin" / "sh") == "busybox"
    assert (fs / "bin" / "busybox").stat().st_mode & 0o111
    assert stat.S_IMODE(os.lstat(fs / "tmp").st_mode) == 0o1777
    assert "root:x:0:0:" in (fs / "etc" / "passwd").read_text()
    assert "nobody:x:65534:" in (fs / "etc" / "group").read_text()
    for name in ("proc", "sys", "dev", "etc"):
        assert (fs / name).is_dir()
    applets = set(os.listdir(fs / "bin"))
    assert {"ls", "cat", "wget", "sh"} <= applets
    assert any("busybox" in line for line in log)


def test_busybox_runs(busybox_store: tuple[ImageStore, list[str]], tmp_path: Path) -> None:
    store, _ = busybox_store
    fs = store.lowerdirs(store.get("busybox"))[0]
    out = subprocess.run(["chroot", str(fs), "/bin/sh", "-c", "echo hi; id -u; ls /"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["hi", "0"] and "tmp" in out


def test_busybox_layer_is_reproducible(tmp_path: Path,
                                       busybox_store: tuple[ImageStore, list[str]]) -> None:
    store, _ = busybox_store
    other = ImageStore(tmp_path / "other")
    baseimages.build_busybox(other, lambda line: None)
    assert other.get("busybox").diff_ids == store.get("busybox").diff_ids


# --- debian:bookworm (about a minute: debootstrap and apt-get from the mirror) ----------------


@pytest.fixture(scope="session")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageStore, float]]:
    """Both base images, built once per test session."""
    store = ImageStore(tmp_path_factory.mktemp("base-images") / "images")
    started = time.monotonic()
    baseimages.ensure_base_images(store, lambda line: None)
    yield store, time.monotonic() - started


def test_ensure_base_images_builds_both_once(base_store: tuple[ImageStore, float]) -> None:
    store, _ = base_store
    ids = {ref: store.get(ref).id for ref in ("busybox", "debian:bookworm")}
    log: list[str] = []
    baseimages.ensure_base_images(store, log.append)
    assert log == []
    assert {ref: store.get(ref).id for ref in ids} == ids


def test_debian_layers(base_store: tuple[ImageStore, float]) -> None:
    store, _ = base_store
    image = store.get("debian:bookworm")
    assert image.config.cmd == ("bash",)
    assert image.config.env == (baseimages.PATH_ENV,)
    assert len(image.diff_ids) == 2
    top, bottom = store.lowerdirs(image)
    assert (bottom / "usr" / "bin" / "apt-get").is_file()
    assert os.listdir(bottom / "dev") == []
    assert list((top / "usr" / "bin").glob("python3*"))
    assert os.listdir(top / "var" / "lib" / "apt" / "lists") in ([], ["partial"])
    assert not list((top / "var" / "cache" / "apt" / "archives").glob("*.deb"))


def test_debian_runs_python(base_store: tuple[ImageStore, float], tmp_path: Path) -> None:
    store, _ = base_store
    lower = store.lowerdirs(store.get("debian:bookworm"))
    out = in_rootfs(lower, tmp_path, "/usr/bin/python3", "-c", "import sys; print(sys.version)")
    assert out.startswith("3.11")
    out = in_rootfs(lower, tmp_path, "/bin/sh", "-c", "cat /etc/os-release; id -u")
    assert "bookworm" in out and out.split()[-1] == "0"
