"""Garbage collection on a real store: prune and rmi keep what is used, and free the disk."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from paas.engine import gc, layers
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import Image, ImageStore
from paas.errors import BlobNotFoundError, ImageInUseError, ImageNotFoundError


@pytest.fixture
def store(busybox_images: ImageStore) -> ImageStore:
    return busybox_images


def child(store: ImageStore, tmp_path: Path, parent: Image | None = None, size: int = 300_000) -> Image:
    """A new image on busybox with one layer of ``size`` random bytes."""
    src = tmp_path / f"layer-{uuid.uuid4().hex}"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(size))
    tar = src.with_suffix(".tar")
    layers.tar_directory(src, tar)
    parent = parent or store.get("busybox")
    return store.commit(parent, tar, parent.config, f"add {src.name}")


def disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        total += sum(os.lstat(os.path.join(dirpath, f)).st_blocks * 512 for f in files)
    return total


def test_untagged_image_goes_and_its_disk_is_freed(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path, size=2_000_000)
    before = disk_bytes(store.root)
    report = gc.prune(store, grace=0)
    assert report.images == (image.id,)
    # its config, manifest and layer blob, and the one snapshot only it had
    assert (report.blobs, report.snapshots) == (3, 1)
    assert before - disk_bytes(store.root) >= 2 * 2_000_000  # blob + unpacked snapshot
    assert report.bytes_freed >= 4_000_000
    assert not store.has(image.id) and not store.content.has(image.layers[-1])
    assert not store.snapshots.exists(image.chain_ids[-1])
    base = store.get("busybox")  # shared with the removed image: untouched
    assert store.content.has(base.layers[0]) and store.snapshots.exists(base.chain_ids[0])


def test_dry_run_removes_nothing(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    report = gc.prune(store, grace=0, dry_run=True)
    assert report.images == (image.id,) and report.blobs == 3 and report.snapshots == 1
    assert store.has(image.id) and store.get(image.id).layers == image.layers
    assert store.snapshots.exists(image.chain_ids[-1])


def test_fresh_untagged_images_and_blobs_wait_for_the_grace_period(
    store: ImageStore, tmp_path: Path
) -> None:
    image = child(store, tmp_path)  # a build step between commit and cache_put
    orphan = store.content.ingest_bytes(b"a layer of a build still running")
    assert image.id not in gc.prune(store, all=True).images  # busybox goes with -a, not these
    assert store.has(image.id) and store.content.has(orphan)
    old = time.time() - gc.GRACE_SECONDS - 60
    os.utime(store.content.path(orphan), (old, old))
    gc.prune(store)
    assert not store.content.has(orphan)
    os.utime(store.content.path(image.id), (old, old))  # the config blob dates the image
    assert image.id in gc.prune(store).images


def test_a_fresh_image_is_spared_only_while_untagged_and_uncached(
    store: ImageStore, tmp_path: Path
) -> None:
    tagged, cached = child(store, tmp_path), child(store, tmp_path)
    store.tag(tagged, "fresh:1")
    store.cache_put("step-key", cached)
    removed = gc.prune(store, all=True).images
    assert tagged.id in removed and cached.id in removed  # -a: young does not protect these


def test_a_blob_of_a_build_in_progress_survives_and_the_build_completes(
    store: ImageStore, tmp_path: Path
) -> None:
    src = tmp_path / "ctx"
    src.mkdir()
    (src / "f").write_text("built")
    layers.tar_directory(src, tmp_path / "l.tar")
    digest = store.content.ingest_file(tmp_path / "l.tar")  # the build wrote its layer...
    gc.prune(store, all=True, in_use={store.get("busybox").id})  # ...a prune runs...
    base = store.get("busybox")
    image = store.commit(base, tmp_path / "l.tar", base.config, "COPY f")  # ...it records it
    assert image.layers[-1] == digest and store.content.has(digest)


def test_add_image_refuses_a_blob_a_prune_removed(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    config = store.content.read_bytes(image.id)
    gc.prune(store, grace=0)
    with pytest.raises(BlobNotFoundError):
        store.add_image(config, image.layers)
    assert not store.has(image.id)


def test_in_use_and_kept_images_survive_even_prune_all(store: ImageStore, tmp_path: Path) -> None:
    used, kept, other = (child(store, tmp_path) for _ in range(3))
    for image, ref in ((used, "used"), (kept, "kept"), (other, "other")):
        store.tag(image, ref)
    busybox = store.get("busybox")
    report = gc.prune(store, all=True, in_use={used.id}, keep={kept.id})
    assert set(report.images) == {other.id, busybox.id}
    assert store.has("used") and store.has("kept") and not store.has("other")
    assert not store.has("busybox")  # tagged but unused: -a removes it
    for image in (used, kept):  # layers shared with the removed busybox are still there
        assert all(store.content.has(d) for d in image.layers)
        assert all(store.snapshots.exists(c) for c in image.chain_ids)


def test_cache_entries_survive_plain_prune_and_go_with_all(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    store.cache_put("step-key", image)
    assert gc.prune(store, grace=0).images == ()
    assert store.cache_get("step-key") == image
    report = gc.prune(store, all=True, grace=0, in_use={store.get("busybox").id})
    assert report.images == (image.id,)
    assert store.cache_get("step-key") is None


def test_shared_layers_survive_when_one_image_goes(store: ImageStore, tmp_path: Path) -> None:
    middle = child(store, tmp_path)
    top = child(store, tmp_path, parent=middle)
    store.tag(top, "top")
    report = gc.prune(store, grace=0)
    assert report.images == (middle.id,)
    assert report.blobs == 2 and report.snapshots == 0  # config and manifest only
    assert store.content.has(middle.layers[-1]) and store.snapshots.exists(middle.chain_ids[-1])
    assert store.lowerdirs(store.get("top"))


def test_rmi_untags_then_removes(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    store.tag(image, "a:1")
    store.tag(image, "b:2")
    assert gc.remove_image(store, "a:1", in_use=set()) == ["Untagged: a:1"]
    assert store.has(image.id)
    lines = gc.remove_image(store, "b:2", in_use=set())
    assert lines == ["Untagged: b:2", f"Deleted: {image.id}"]
    assert not store.has(image.id) and not store.content.has(image.layers[-1])
    assert not store.snapshots.exists(image.chain_ids[-1])
    assert store.content.has(store.get("busybox").layers[0])
    with pytest.raises(ImageNotFoundError):
        gc.remove_image(store, "b:2", in_use=set())


def test_rmi_by_id_with_several_tags_needs_force(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    store.tag(image, "a:1")
    store.tag(image, "b:2")
    with pytest.raises(ImageInUseError, match="must be forced.*several tags"):
        gc.remove_image(store, image.short_id, in_use=set())
    lines = gc.remove_image(store, image.short_id, in_use=set(), force=True)
    assert lines == ["Untagged: a:1", "Untagged: b:2", f"Deleted: {image.id}"]


def test_rmi_of_an_image_a_stopped_container_uses(store: ImageStore, tmp_path: Path) -> None:
    image = child(store, tmp_path)
    store.tag(image, "app:1")
    with pytest.raises(ImageInUseError, match="must force"):
        gc.remove_image(store, "app:1", in_use={image.id})
    with pytest.raises(ImageInUseError, match="stopped container"):
        gc.remove_image(store, image.id, in_use={image.id})
    assert store.has("app:1")
    pinned = set(image.chain_ids)
    lines = gc.remove_image(store, "app:1", in_use={image.id}, force=True, pinned=pinned)
    assert lines == ["Untagged: app:1", f"Deleted: {image.id}"]
    # the container's snapshots stay while it exists, and go with a prune after it is removed
    assert all(store.snapshots.exists(c) for c in image.chain_ids)
    gc.prune(store, grace=0)
    assert not store.snapshots.exists(image.chain_ids[-1])


def test_rmi_never_removes_a_running_containers_or_kept_image(
    store: ImageStore, tmp_path: Path
) -> None:
    image = child(store, tmp_path)
    store.tag(image, "app:1")
    for hard in ({"running": {image.id}}, {"keep": {image.id}}):
        with pytest.raises(ImageInUseError, match="cannot be forced"):
            gc.remove_image(store, image.id, in_use={image.id}, force=True, **hard)  # type: ignore[arg-type]
    # by name, a forced rmi only takes the tag away, as Docker does
    lines = gc.remove_image(store, "app:1", in_use={image.id}, force=True, running={image.id})
    assert lines == ["Untagged: app:1"]
    assert store.has(image.id)
    assert gc.prune(store, grace=0, in_use={image.id}).images == ()


@pytest.fixture
def engine(busybox_engine: Engine) -> Engine:
    return busybox_engine


def _spec(
    images: ImageStore, image: Image, argv: tuple[str, ...], record_image: bool = True
) -> ContainerSpec:
    lowerdirs = tuple(str(p) for p in images.lowerdirs(image))
    return ContainerSpec(name=f"gc-{uuid.uuid4().hex[:8]}", lowerdirs=lowerdirs, argv=argv,
                         image=image.id if record_image else "", network="none")


def test_real_containers_keep_their_images(engine: Engine, tmp_path: Path) -> None:
    images = engine.images
    stopped_image, running_image, unknown_image = (child(images, tmp_path) for _ in range(3))
    engine.runtime.create(_spec(images, stopped_image, ("true",)))
    # a container made without spec.image is still traced to its image by its lowerdirs
    engine.runtime.create(_spec(images, unknown_image, ("true",), record_image=False))
    running = engine.runtime.create(_spec(images, running_image, ("sleep", "60")))
    engine.runtime.start(running.id)
    usage = gc.container_usage(images, engine.runtime.list())
    assert usage.in_use == {stopped_image.id, running_image.id, unknown_image.id}
    assert usage.running == {running_image.id}
    assert set(running_image.chain_ids) <= usage.pinned

    busybox = images.get("busybox")
    report = gc.prune(images, all=True, in_use=usage.in_use, pinned=usage.pinned, grace=0)
    assert report.images == (busybox.id,)
    with pytest.raises(ImageInUseError, match="cannot be forced"):
        gc.remove_image(images, running_image.id, in_use=usage.in_use, running=usage.running,
                        force=True)
    assert images.has(running_image.id)
    engine.runtime.stop(running.id, timeout=1)
