"""The image store: OCI JSON, ids, chain ids, tags, and overlay-ready lowerdirs."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from paas.engine import layers
from paas.engine.images import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    Image,
    ImageConfig,
    ImageStore,
    normalize_ref,
)
from paas.engine.snapshots import chain_ids
from paas.errors import ImageInvalidError, ImageNotFoundError, NameInvalidError

CONFIG = ImageConfig(env=("PATH=/bin", "A=1"), cmd=("sh",), working_dir="/app", user="nobody",
                     exposed_ports=("5000/tcp",), labels={"k": "v"}, stop_signal="SIGTERM")


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def two_layers(tmp_path: Path, store: ImageStore) -> tuple[Image, Image]:
    base = tmp_path / "base"
    (base / "d").mkdir(parents=True)
    (base / "a").write_text("a")
    (base / "b").write_text("b")
    (base / "d" / "old").write_text("old")
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    os.mknod(upper / "a", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "c").write_text("c")
    (upper / "d" / "new").write_text("new")
    os.setxattr(upper / "d", layers.OPAQUE_XATTR, b"y")
    layers.tar_directory(base, tmp_path / "l1.tar")
    layers.tar_overlay_upper(upper, tmp_path / "l2.tar")
    one = store.commit(None, tmp_path / "l1.tar", CONFIG, "base files")
    two = store.commit(one, tmp_path / "l2.tar", CONFIG.replace(cmd=("ls",)), "delete a")
    return one, two


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_image_id_is_the_config_digest(store: ImageStore, two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    raw = store.content.read_bytes(two.id)
    assert sha(raw) == two.id
    doc = json.loads(raw)
    assert doc["os"] == "linux" and doc["architecture"]
    assert doc["rootfs"] == {"type": "layers", "diff_ids": list(two.diff_ids)}
    assert doc["config"] == {
        "Env": ["PATH=/bin", "A=1"], "Cmd": ["ls"], "WorkingDir": "/app", "User": "nobody",
        "ExposedPorts": {"5000/tcp": {}}, "Labels": {"k": "v"}, "StopSignal": "SIGTERM",
    }
    assert [h["created_by"] for h in doc["history"]] == ["base files", "delete a"]


def test_manifest_and_chain_ids(store: ImageStore, tmp_path: Path,
                                two_layers: tuple[Image, Image]) -> None:
    one, two = two_layers
    assert two.diff_ids == (sha((tmp_path / "l1.tar").read_bytes()),
                            sha((tmp_path / "l2.tar").read_bytes()))
    assert two.chain_ids[0] == two.diff_ids[0] == one.chain_ids[0]
    joined = f"{two.diff_ids[0]} {two.diff_ids[1]}".encode()
    assert two.chain_ids == chain_ids(two.diff_ids) == (two.diff_ids[0], sha(joined))
    manifest = json.loads(store.content.read_bytes(two.manifest_digest))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    assert manifest["config"] == {"mediaType": CONFIG_MEDIA_TYPE, "digest": two.id,
                                  "size": len(store.content.read_bytes(two.id))}
    assert [(m["mediaType"], m["digest"], m["size"]) for m in manifest["layers"]] == [
        (layers.LAYER_MEDIA_TYPE, d, store.content.size(d)) for d in two.diff_ids
    ]


def test_overlay_of_lowerdirs_honours_whiteouts(store: ImageStore, tmp_path: Path,
                                                two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    lower = store.lowerdirs(two)
    assert lower == [store.snapshots.path(c) for c in reversed(two.chain_ids)]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # The private mount namespace takes the mount with it when sh exits, pass or fail.
    script = 'mount -t overlay overlay -o "lowerdir=$1" "$2" && ls -A "$2" && ls -A "$2/d"'
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         ":".join(map(str, lower)), str(mnt)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == ["b", "c", "d", "new"]
    assert not os.path.ismount(mnt) and list(mnt.iterdir()) == []


def test_tags_and_lookup(store: ImageStore, two_layers: tuple[Image, Image]) -> None:
    one, two = two_layers
    assert store.tag(two, "app") == "app:latest"
    store.tag(one, "localhost:5000/team/app:v1")
    assert store.get("app") == store.get("app:latest") == two
    assert store.get("localhost:5000/team/app:v1") == one
    assert store.get(two.id) == two
    assert store.get(two.id[7:19]) == two
    assert store.refs(two) == ["app:latest"]
    assert store.tags() == {"app:latest": two.id, "localhost:5000/team/app:v1": one.id}
    assert {i.id for i in store.list()} == {one.id, two.id}
    store.remove_tag("app")
    with pytest.raises(ImageNotFoundError):
        store.get("app")
    with pytest.raises(ImageNotFoundError):
        store.remove_tag("app")
    with pytest.raises(ImageNotFoundError):
        store.get("sha256:" + "f" * 64)
    assert store.get(two.id) == two


def test_store_reopens_from_disk(tmp_path: Path, store: ImageStore,
                                 two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    store.tag(two, "app:v2")
    again = ImageStore(store.root)
    assert again.get("app:v2") == two
    assert not list(store.content.root.joinpath("ingest").iterdir())


def test_commit_without_layer_is_an_empty_step(store: ImageStore,
                                               two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    three = store.commit(two, None, two.config.with_env("A", "2"), "ENV A=2")
    assert three.diff_ids == two.diff_ids and three.chain_ids == two.chain_ids
    assert three.config.env == ("PATH=/bin", "A=2")
    assert three.history[-1].empty_layer and three.id != two.id
    assert store.lowerdirs(three) == store.lowerdirs(two)


def test_lowerdirs_restores_a_missing_snapshot(store: ImageStore,
                                               two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    store.snapshots.remove(two.chain_ids[1])
    assert all(p.is_dir() for p in store.lowerdirs(two))


@pytest.mark.parametrize("ref", ["App", "app:", ":tag", "a b", "app:bad/tag", "-app", "app@sha"])
def test_bad_refs(store: ImageStore, ref: str) -> None:
    with pytest.raises(NameInvalidError):
        normalize_ref(ref)


def test_config_helpers_round_trip() -> None:
    assert ImageConfig.from_oci(CONFIG.to_oci()) == CONFIG
    assert ImageConfig().to_oci() == {}
    assert ImageConfig(cmd=()).to_oci() == {"Cmd": []}
    assert CONFIG.replace(user="root").user == "root"
    assert CONFIG.replace(labels={"b": "2", "a": "1"}).to_oci()["Labels"] == {"a": "1", "b": "2"}
    assert CONFIG.env_dict() == {"PATH": "/bin", "A": "1"}
    assert CONFIG.with_env("B", "x=y").env == ("PATH=/bin", "A=1", "B=x=y")


def _tag_in_child(root: str, image_id: str, n: int) -> None:
    store = ImageStore(Path(root))
    store.tag(store.get(image_id), f"app:t{n}")


def test_concurrent_tagging_loses_nothing(store: ImageStore,
                                          two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.starmap(_tag_in_child, [(str(store.root), two.id, n) for n in range(24)])
    assert len(store.tags()) == 24


def test_history_comment_and_size(store: ImageStore, tmp_path: Path,
                                  two_layers: tuple[Image, Image]) -> None:
    _, two = two_layers
    three = store.commit(two, None, two.config, "LABEL x=1", comment="a note")
    assert store.get(three.id).history[-1].comment == "a note"
    assert json.loads(store.content.read_bytes(three.id))["history"][-1]["comment"] == "a note"
    assert store.size(three) == sum(store.content.size(d) for d in two.layers)


def test_records_remove_drops_tags_and_cache_but_keeps_blobs(
    store: ImageStore, two_layers: tuple[Image, Image]
) -> None:
    _, two = two_layers
    store.tag(two, "a:1")
    store.tag(two, "b:1")
    store.cache_put("key", two)
    with store.records() as records:
        assert records.resolve("a:1") == two
        assert records.cached() == {two.id}
        assert records.remove(two.id) == ["a:1", "b:1"]
        with pytest.raises(ImageNotFoundError):
            records.remove(two.id)
    assert not store.has(two.id) and store.tags() == {} and store.cache_get("key") is None
    assert all(store.content.has(d) for d in two.blobs)


def test_a_layer_that_fails_to_unpack_stores_no_config(store: ImageStore, tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    digest = store.content.ingest_file(tmp_path / "evil.tar")
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
    with pytest.raises(ImageInvalidError):
        store.add_image(config, (digest,))
    assert store.content.digests() == [digest] and store.list() == []
