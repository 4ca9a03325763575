"""Garbage collection: removing images (``rmi``, ``prune``) and then the blobs and snapshots
no remaining image needs.

Who may go is decided, and the image records removed, under the image index lock, so no
tag, cache entry or new image slips in between. What callers know and the engine does not
comes in as sets of image ids: ``in_use`` (some container was made from it), ``running``
(a running container was), ``keep`` (one of an app's kept releases) and ``pinned`` (chain
ids of snapshots some container mounts; they outlive a forced ``rmi`` of their image).

Concurrent builds. A build writes its layer and config blobs, unpacks snapshots, and only
then adds the image record; a blob or snapshot that no record names yet may belong to such
a build. So an unreferenced blob or snapshot is deleted only when it belonged to an image
this run removed, or when it is older than ``GRACE_SECONDS``. Blobs are unlinked while the
index lock is still held and ``ImageStore.add_image`` checks, under that lock, that all its
blobs exist, so an image is never recorded with a blob a prune just deleted: the build
fails with a clear error instead. Snapshots are removed after the lock is released (an
rmtree can be slow); one removed under a racing build is unpacked again from its blob the
next time ``ImageStore.lowerdirs`` needs it. Fresh images that are neither tagged nor build
cache entries yet (a build step between ``commit`` and ``cache_put``; dated by their config
blob, which every add writes anew) are spared for
the same grace period.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

from paas.engine.containers import Container, ContainerStatus
from paas.engine.images import Image, ImageStore, Records, tag_in
from paas.errors import ImageInUseError

GRACE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class PruneReport:
    images: tuple[str, ...]  # ids of the removed images
    blobs: int
    snapshots: int
    bytes_freed: int


@dataclass(frozen=True, slots=True)
class Usage:
    """What the containers of a runtime hold on to."""

    in_use: frozenset[str]  # image ids any container uses
    running: frozenset[str]  # image ids a running container uses
    pinned: frozenset[str]  # chain ids of the snapshots containers mount


def container_usage(images: ImageStore, containers: Iterable[Container]) -> Usage:
    """What the containers use: the image recorded in their spec, or the image whose snapshots
    their lowerdirs are (a container made without ``spec.image``), and those snapshots."""
    by_top = {_real(images.snapshots.path(i.chain_ids[-1])): i.id for i in images.list() if i.chain_ids}
    snapshot_root = _real(images.snapshots.root)
    in_use: set[str] = set()
    running: set[str] = set()
    pinned: set[str] = set()
    for container in containers:
        lowerdirs = [_real(Path(d)) for d in container.spec.lowerdirs]
        used = {container.spec.image} - {""}
        if lowerdirs and lowerdirs[0] in by_top:
            used.add(by_top[lowerdirs[0]])
        in_use |= used
        if container.status is ContainerStatus.RUNNING:
            running |= used
        for lower in map(Path, lowerdirs):
            if lower.name == "fs" and str(lower.parent.parent) == snapshot_root:
                pinned.add(f"sha256:{lower.parent.name}")
    return Usage(frozenset(in_use), frozenset(running), frozenset(pinned))


def _real(path: Path) -> str:
    return os.path.realpath(path)


# --- prune ---


def prune(
    images: ImageStore,
    *,
    keep: Set[str] = frozenset(),
    in_use: Set[str] = frozenset(),
    all: bool = False,  # noqa: A002 -- Docker's flag name
    dry_run: bool = False,
    pinned: Set[str] = frozenset(),
    grace: float = GRACE_SECONDS,
) -> PruneReport:
    """Remove unused images, then the blobs and snapshots no remaining image needs.

    Without ``all``: untagged images that are not build cache entries. With ``all``: every
    image (tagged or not, cache entries too). Never one in ``keep`` or ``in_use``, nor a
    fresh image not yet tagged or cached (younger than ``grace`` seconds).
    """
    now = time.time()
    with images.records() as records:
        doomed = _prune_candidates(records, keep | in_use, all, now - grace)
        if not dry_run:
            for image in doomed:
                records.remove(image.id)
        gone = {i.id for i in doomed}
        remaining = [i for i in records.images() if i.id not in gone]
        blobs, blob_bytes = _free_blobs(images, remaining, doomed, now - grace, dry_run)
    snapshots, snap_bytes = _free_snapshots(images, remaining, doomed, pinned, now - grace, dry_run)
    return PruneReport(tuple(i.id for i in doomed), blobs, snapshots, blob_bytes + snap_bytes)


def _prune_candidates(
    records: Records, protected: Set[str], all: bool, fresh_after: float  # noqa: A002
) -> list[Image]:
    images = records.images()
    named = set(records.tags().values()) | records.cached()
    # A build step's image between commit and cache_put is neither tagged nor cached yet.
    fresh = {i.id for i in images if i.id not in named and records.added(i.id) > fresh_after}
    spared = set(protected) | fresh | (set() if all else named)
    return [image for image in images if image.id not in spared]


def _free_blobs(
    images: ImageStore, remaining: list[Image], removed: list[Image], old_before: float,
    dry_run: bool,
) -> tuple[int, int]:
    """Delete blobs no remaining image refers to; return (count, bytes)."""
    needed = {d for i in remaining for d in i.blobs}
    released = {d for i in removed for d in i.blobs}
    count = freed = 0
    for digest in images.content.digests():
        if digest in needed:
            continue
        path = images.content.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if digest not in released and st.st_mtime > old_before:
            continue  # perhaps a blob of a build in progress
        if not dry_run:
            images.content.delete(digest)
        count, freed = count + 1, freed + st.st_size
    return count, freed


def _free_snapshots(
    images: ImageStore, remaining: list[Image], removed: list[Image], pinned: Set[str],
    old_before: float, dry_run: bool,
) -> tuple[int, int]:
    """Delete snapshots no remaining image needs and no container mounts; (count, bytes)."""
    needed = {c for i in remaining for c in i.chain_ids} | set(pinned)
    released = {c for i in removed for c in i.chain_ids}
    count = freed = 0
    for chain_id in images.snapshots.list():
        if chain_id in needed:
            continue
        fs = images.snapshots.path(chain_id)
        try:
            mtime = fs.parent.stat().st_mtime
        except FileNotFoundError:
            continue
        if chain_id not in released and mtime > old_before:
            continue  # perhaps unpacked by a build that has not recorded its image yet
        size = _tree_bytes(fs)
        if not dry_run:
            images.snapshots.remove(chain_id)
        count, freed = count + 1, freed + size
    return count, freed


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


# --- rmi ---


def remove_image(
    images: ImageStore,
    ref_or_id: str,
    *,
    in_use: Set[str],
    force: bool = False,
    running: Set[str] = frozenset(),
    keep: Set[str] = frozenset(),
    pinned: Set[str] = frozenset(),
) -> list[str]:
    """``rmi``: untag a ref, and remove the image once no tag is left; Docker's rules.

    A ref given by name is untagged first; the image goes when that was its last tag and
    nothing needs it. By id, an image with several tags, or one a stopped container uses,
    needs ``force``. An image a running container uses, or one of a kept release, is never
    removed: by name it is only untagged (with ``force``), by id it is an error.
    Returns Docker-style lines: ``Untagged: REF`` and ``Deleted: ID``.
    """
    old_before = time.time() - GRACE_SECONDS
    with images.records() as records:
        hard = {i: "a running container uses it" for i in running}
        hard |= {i: "one of an app's kept releases uses it" for i in keep}
        lines, doomed = _rmi_records(records, ref_or_id, in_use, force, hard)
        if doomed is None:
            return lines
        remaining = records.images()
        _free_blobs(images, remaining, [doomed], old_before, dry_run=False)
    _free_snapshots(images, remaining, [doomed], pinned, old_before, dry_run=False)
    return lines


def _rmi_records(
    records: Records, ref_or_id: str, in_use: Set[str], force: bool, hard: Mapping[str, str]
) -> tuple[list[str], Image | None]:
    """Untag and remove records under the lock; return the lines and the image removed, if any."""
    image = records.resolve(ref_or_id)
    refs = sorted(r for r, i in records.tags().items() if i == image.id)
    by_name = tag_in(ref_or_id, refs)
    lines: list[str] = []
    if by_name is not None:
        if len(refs) == 1 and image.id in in_use and not force:
            raise ImageInUseError(
                f"unable to remove {by_name} (must force): a container uses image {image.short_id}"
            )
        lines.append(f"Untagged: {records.untag(by_name)}")
        if len(refs) > 1 or image.id in hard:
            return lines, None  # other tags remain, or a hard user keeps it (untagged)
    else:
        _check_removable(image, refs, in_use, force, hard)
    lines += [f"Untagged: {ref}" for ref in records.remove(image.id) if ref != by_name]
    lines.append(f"Deleted: {image.id}")
    return lines, image


def _check_removable(
    image: Image, refs: list[str], in_use: Set[str], force: bool, hard: Mapping[str, str]
) -> None:
    if image.id in hard:
        raise ImageInUseError(f"unable to delete {image.short_id} (cannot be forced): {hard[image.id]}")
    if force:
        return
    if len(refs) > 1:
        raise ImageInUseError(
            f"unable to delete {image.short_id} (must be forced): it has several tags "
            f"({', '.join(refs)})"
        )
    if image.id in in_use:
        raise ImageInUseError(
            f"unable to delete {image.short_id} (must be forced): a stopped container uses it"
        )
