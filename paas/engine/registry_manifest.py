"""Manifests as registries serve them: OCI and Docker schema 2, images and indexes.

Reads what a registry sent (never trusted: every field is type-checked, sizes are
capped), chooses this machine's entry from an index, and pairs an image manifest's
layers with its config's DiffIDs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, BinaryIO

from paas.engine.content import check_digest
from paas.engine.images import local_architecture
from paas.errors import ImageInvalidError, ImageNotFoundError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPTED_MANIFESTS = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20
READ_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: tuple[str, str, str] = ("", "", "")  # os, architecture, variant (index entries)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as fetched: its bytes' digest, media type and parsed JSON."""

    digest: str
    media_type: str
    doc: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


@dataclass(frozen=True, slots=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


def read_capped(src: BinaryIO, limit: int, what: str) -> bytes:
    """Read to the end, refusing more than ``limit`` bytes (registries are not trusted)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := src.read(min(READ_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ImageInvalidError(f"{what} is larger than {limit} bytes")
    return b"".join(chunks)


def parse_manifest(body: bytes, digest: str, content_type: str, ref: str) -> Manifest:
    """The manifest a registry sent; its media type from the JSON, else from Content-Type."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ImageInvalidError(f"{ref}: the manifest is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageInvalidError(f"{ref}: the manifest is not a JSON object")
    media_type = doc.get("mediaType") or content_type.split(";", 1)[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageInvalidError(f"{ref}: Docker schema 1 manifests are not supported; "
                                "push the image again with a current client")
    if not media_type and isinstance(doc.get("manifests"), list):
        media_type = OCI_INDEX  # an OCI index may omit mediaType
    if not media_type and isinstance(doc.get("layers"), list):
        media_type = OCI_MANIFEST
    if media_type not in ACCEPTED_MANIFESTS:
        raise ImageInvalidError(f"{ref}: unsupported manifest type {media_type!r}")
    return Manifest(digest, media_type, doc)


def _descriptor(raw: Any, ref: str, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ImageInvalidError(f"{ref}: {what} is not a descriptor object")
    digest, size, media_type = raw.get("digest"), raw.get("size"), raw.get("mediaType", "")
    try:
        check_digest(digest)  # type: ignore[arg-type]
    except ImageInvalidError:
        raise ImageInvalidError(f"{ref}: {what} has an unusable digest {digest!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(media_type, str):
        raise ImageInvalidError(f"{ref}: {what} has a malformed size or mediaType")
    plat = raw.get("platform") or {}
    if not isinstance(plat, dict):
        raise ImageInvalidError(f"{ref}: {what} has a malformed platform")
    return Descriptor(media_type, digest, size,  # type: ignore[arg-type]
                      (str(plat.get("os", "")), str(plat.get("architecture", "")),
                       str(plat.get("variant", ""))))


def local_platform() -> tuple[str, str]:
    return "linux", local_architecture()


def choose_platform(index: Manifest, ref: str) -> str:
    """The digest of the index entry for linux on this machine's architecture."""
    entries = index.doc.get("manifests")
    if not isinstance(entries, list):
        raise ImageInvalidError(f"{ref}: the index has no manifests list")
    descriptors = [_descriptor(e, ref, f"index entry {i}") for i, e in enumerate(entries)]
    want = local_platform()
    for descriptor in descriptors:
        if descriptor.platform[:2] == want and descriptor.media_type not in INDEXES:
            return descriptor.digest
    have = ", ".join(sorted({f"{d.platform[0]}/{d.platform[1]}" for d in descriptors})) or "none"
    raise ImageNotFoundError(f"{ref}: no image for {want[0]}/{want[1]} (the index has: {have})")


def parse_image_manifest(manifest: Manifest, ref: str) -> ImageManifest:
    doc = manifest.doc
    config = _descriptor(doc.get("config"), ref, "the config descriptor")
    if config.media_type not in CONFIGS:
        raise ImageInvalidError(f"{ref}: not a container image (config type {config.media_type!r})")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise ImageInvalidError(f"{ref}: the manifest has no layers list")
    layers = tuple(_descriptor(raw, ref, f"layer {i}") for i, raw in enumerate(raw_layers))
    for i, layer in enumerate(layers):
        if "tar" not in layer.media_type:
            raise ImageInvalidError(f"{ref}: layer {i} has type {layer.media_type!r}, not a tar layer")
    return ImageManifest(config, layers)


def diff_ids_of(config_bytes: bytes, manifest: ImageManifest, ref: str) -> tuple[str, ...]:
    """The config's DiffIDs, one per manifest layer."""
    try:
        diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as e:
        raise ImageInvalidError(f"{ref}: the image config has no rootfs.diff_ids ({e})") from None
    if not isinstance(diff_ids, list):
        raise ImageInvalidError(f"{ref}: the image config's rootfs.diff_ids is not a list")
    if len(diff_ids) != len(manifest.layers):
        raise ImageInvalidError(
            f"{ref}: the config lists {len(diff_ids)} DiffIDs for {len(manifest.layers)} layers")
    for diff_id in diff_ids:
        try:
            check_digest(diff_id)
        except ImageInvalidError:
            raise ImageInvalidError(f"{ref}: the config has an unusable DiffID {diff_id!r}") from None
    return tuple(diff_ids)


def platform_warning(config_bytes: bytes) -> str | None:
    """A warning when the image's config names another platform than this machine's."""
    try:
        doc = json.loads(config_bytes)
        have = (str(doc.get("os") or ""), str(doc.get("architecture") or ""))
    except (ValueError, AttributeError):
        return None
    want = local_platform()
    if all(have) and have != want:
        return f"WARNING: the image is for {have[0]}/{have[1]}; this machine is {want[0]}/{want[1]}"
    return None


def blobs_of_stored_manifest(manifest_bytes: bytes, digest: str) -> list[tuple[str, int]]:
    """(digest, size) of each layer, then of the config, of a manifest from our own store."""
    manifest = parse_manifest(manifest_bytes, digest, OCI_MANIFEST, digest)
    image = parse_image_manifest(manifest, digest)
    return [(d.digest, d.size) for d in (*image.layers, image.config)]
