"""Image archives: ``save`` images to one tar, ``load`` them back from ours, Docker's or podman's.

``save`` writes what ``docker save`` writes since Docker 25: an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...``) and, in the same tar, Docker's
``manifest.json`` whose Config and Layers point at the same blob files. So the tar is both
a ``docker-archive`` and an ``oci-archive`` to podman and skopeo.

``load`` reads either form (``manifest.json`` wins when both are there); the archive is
untrusted and is read by ``archive_read`` into checked plans. Every layer is verified
against its DiffID while it is stored (``ingest.ingest_layer``, which also caps
decompression) before the first image record is added, and no tag is set unless every
image of the archive was recorded; on an error the records and blobs this load added are
removed again.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paas.engine.archive_read import (
    CONTAINERD_NAME,
    DOCKER_MANIFEST_FILE,
    INDEX_MEDIA_TYPE,
    OCI_INDEX_FILE,
    OCI_LAYOUT_FILE,
    OCI_LAYOUT_VERSION,
    REF_NAME,
    Archive,
    Plan,
    blob_name,
    docker_plans,
    oci_plans,
    open_archive,
)
from paas.engine.content import digest_bytes
from paas.engine.images import MANIFEST_MEDIA_TYPE, Image, ImageStore, tag_in
from paas.engine.ingest import ingest_layer
from paas.errors import ImageInvalidError, PaasError

__all__ = ["load", "save"]


# --- save ---------------------------------------------------------------------------------


def save(images: ImageStore, refs: Sequence[str], out: Path) -> None:
    """Write the images (by ref or id) to ``out``: an OCI layout plus Docker's manifest.json."""
    chosen: dict[str, tuple[Image, list[str]]] = {}
    tags = images.tags()
    for arg in refs:
        image = images.get(arg)
        names = chosen.setdefault(image.id, (image, []))[1]
        ref = tag_in(arg, tags)
        if ref is not None and ref not in names:
            names.append(ref)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _write_layout(images, tar, list(chosen.values()))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_layout(images: ImageStore, tar: tarfile.TarFile, chosen: list[tuple[Image, list[str]]]) -> None:
    for name in ("blobs", "blobs/sha256"):
        tar.addfile(_info(name, tarfile.DIRTYPE, 0))
    written: set[str] = set()
    for image, _ in chosen:
        for digest in image.blobs:
            if digest not in written:
                _add_blob(images, tar, digest)
                written.add(digest)
    _add_json(tar, OCI_LAYOUT_FILE, {"imageLayoutVersion": OCI_LAYOUT_VERSION})
    _add_json(tar, OCI_INDEX_FILE, _oci_index(images, chosen))
    _add_json(tar, DOCKER_MANIFEST_FILE, [_docker_entry(image, names) for image, names in chosen])


def _oci_index(images: ImageStore, chosen: list[tuple[Image, list[str]]]) -> dict[str, Any]:
    manifests = []
    for image, names in chosen:
        descriptor = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": image.manifest_digest,
            "size": images.content.size(image.manifest_digest),
        }
        if not names:
            manifests.append(descriptor)
        # Like Docker: the full name for containerd, the tag alone as the OCI ref name.
        for name in names:
            annotations = {CONTAINERD_NAME: name, REF_NAME: name.rpartition(":")[2]}
            manifests.append({**descriptor, "annotations": annotations})
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}


def _docker_entry(image: Image, names: list[str]) -> dict[str, Any]:
    return {
        "Config": blob_name(image.id),
        "RepoTags": names or None,
        "Layers": [blob_name(d) for d in image.layers],
    }


def _info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _add_blob(images: ImageStore, tar: tarfile.TarFile, digest: str) -> None:
    with images.content.open(digest) as f:
        size = os.fstat(f.fileno()).st_size
        tar.addfile(_info(blob_name(digest), tarfile.REGTYPE, size), f)


def _add_json(tar: tarfile.TarFile, name: str, doc: Any) -> None:
    data = json.dumps(doc, separators=(",", ":")).encode()
    tar.addfile(_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


# --- load ---------------------------------------------------------------------------------


def load(images: ImageStore, tar_path: Path) -> list[str]:
    """Import every image of a docker-archive or oci-archive tar; return the refs (or ids) loaded.

    ImageInvalidError (or LayerUnsafeError) on anything malformed or not matching its digest;
    then no image of the archive is recorded and no tag is set.
    """
    with open_archive(Path(tar_path)) as archive:
        if archive.has(DOCKER_MANIFEST_FILE):
            plans = docker_plans(archive)
        elif archive.has(OCI_INDEX_FILE):
            plans = oci_plans(archive)
        else:
            raise ImageInvalidError(f"{tar_path}: neither manifest.json nor index.json: not an image archive")
        if not plans:
            raise ImageInvalidError(f"{tar_path}: the archive holds no image")
        return _import(images, archive, plans)


def _import(images: ImageStore, archive: Archive, plans: list[Plan]) -> list[str]:
    before = set(images.content.digests())
    known = {i.id for i in images.list()}
    # What this load may write: its layers, configs and manifests (nothing a concurrent
    # build writes meanwhile, which an undo must not touch).
    ours = {digest_bytes(p.config) for p in plans} | {x.diff_id for p in plans for x in p.layers}
    added: list[Image] = []
    try:
        for plan in plans:
            for layer in plan.layers:
                if not images.content.has(layer.diff_id):
                    with archive.stream(layer.member, "layer") as src:
                        ingest_layer(images.content, src, digest=layer.digest, diff_id=layer.diff_id)
        for plan in plans:
            added.append(images.add_image(plan.config, tuple(x.diff_id for x in plan.layers)))
    except (PaasError, OSError):
        new = [i for i in added if i.id not in known]
        _undo(images, new, (ours | {i.manifest_digest for i in new}) - before)
        raise
    loaded: list[str] = []
    for image, plan in zip(added, plans, strict=True):
        loaded += [images.tag(image, ref) for ref in plan.refs] or [image.id]
    return loaded


def _undo(images: ImageStore, added: list[Image], written: set[str]) -> None:
    """Forget the images this load recorded, and the blobs it wrote that nothing else uses."""
    with images.records() as records:
        for image in added:
            records.remove(image.id)
        needed = {d for i in records.images() for d in i.blobs}
        for digest in written - needed:
            images.content.delete(digest)
