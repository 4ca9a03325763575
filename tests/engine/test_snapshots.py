"""Snapshots: ChainIDs, idempotent and concurrent unpacking, removal."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import tarfile
import threading
import time
from pathlib import Path

import pytest

from paas.engine.content import digest_file
from paas.engine.snapshots import Snapshots, chain_ids
from paas.errors import ImageInvalidError, LayerUnsafeError


def layer_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_chain_ids_follow_the_oci_spec() -> None:
    d1, d2, d3 = ("sha256:" + c * 64 for c in "abc")
    c2 = "sha256:" + hashlib.sha256(f"{d1} {d2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {d3}".encode()).hexdigest()
    assert chain_ids([d1, d2, d3]) == (d1, c2, c3)
    assert chain_ids([]) == ()
    with pytest.raises(ImageInvalidError):
        chain_ids(["sha256:../../x"])


def test_ensure_unpacks_once(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "snaps")
    layer = layer_tar(tmp_path / "l.tar", {"etc/hello": b"hi"})
    chain = digest_file(layer)
    assert not snaps.exists(chain)
    fs = snaps.ensure(chain, layer)
    assert fs == snaps.path(chain) and snaps.exists(chain)
    assert (fs / "etc" / "hello").read_bytes() == b"hi"
    (fs / "marker").write_text("still the same snapshot")
    assert snaps.ensure(chain, layer) == fs
    assert (fs / "marker").exists()
    assert snaps.list() == [chain]


def _ensure_in_child(root: str, chain: str, layer: str) -> str:
    return str(Snapshots(Path(root)).ensure(chain, Path(layer)))


def test_concurrent_ensure_is_safe(tmp_path: Path) -> None:
    files = {f"d{i}/f{j}": bytes([i, j]) * 5000 for i in range(20) for j in range(20)}
    layer = layer_tar(tmp_path / "l.tar", files)
    chain = digest_file(layer)
    root = tmp_path / "snaps"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        paths = pool.starmap(_ensure_in_child, [(str(root), chain, str(layer))] * 12)
    assert set(paths) == {str(Snapshots(root).path(chain))}
    fs = Path(paths[0])
    assert all((fs / name).read_bytes() == data for name, data in files.items())
    assert sorted(p.name for p in (root / chain[7:]).iterdir()) == ["fs"]


def test_failed_unpack_leaves_no_snapshot(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "snaps")
    layer = layer_tar(tmp_path / "bad.tar", {"ok": b"1", "../escape": b"2"})
    chain = digest_file(layer)
    with pytest.raises(LayerUnsafeError):
        snaps.ensure(chain, layer)
    assert not snaps.exists(chain)
    assert snaps.list() == []
    assert not (tmp_path / "escape").exists()


def test_remove(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "snaps")
    layer = layer_tar(tmp_path / "l.tar", {"a": b"a"})
    chain = digest_file(layer)
    snaps.ensure(chain, layer)
    snaps.remove(chain)
    snaps.remove(chain)
    assert not snaps.exists(chain)
    assert list((tmp_path / "snaps").iterdir()) == []  # no lock file left behind either
    with pytest.raises(ImageInvalidError):
        snaps.path("sha256:..")


def test_a_waiter_on_a_removed_snapshot_lock_takes_the_new_one(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "snaps")
    layer = layer_tar(tmp_path / "l.tar", {"a": b"a"})
    chain = digest_file(layer)
    snaps.ensure(chain, layer)
    done = threading.Event()

    def remove_then_ensure() -> None:
        snaps.remove(chain)  # waits for the lock held below, then deletes the lock file
        done.set()

    with snaps._locked(chain):
        remover = threading.Thread(target=remove_then_ensure)
        remover.start()
        time.sleep(0.2)
        assert not done.is_set()
    remover.join(10)
    assert done.is_set() and not snaps.exists(chain)
    assert snaps.ensure(chain, layer).is_dir()
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [chain[7:], f"{chain[7:]}.lock"]
