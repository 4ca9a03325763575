"""Images: OCI image configs and manifests, their tags, and the store that keeps them.

An image is an OCI config blob (its digest is the image id) plus a manifest
blob listing the layer blobs, all in the content store; each layer is also
unpacked as a snapshot keyed by its ChainID. ``images.json`` maps image ids to
manifest digests, refs (``name:tag``) to image ids, and build cache keys to the
image each build step produced; it is rewritten atomically under an fcntl lock.
``ImageConfig`` and ``History`` are defined in imageconfig.py and importable from here.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import platform
import re
import tempfile
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paas.engine.content import ContentStore, check_digest, digest_bytes
from paas.engine.imageconfig import History, ImageConfig
from paas.engine.layers import LAYER_MEDIA_TYPE
from paas.engine.snapshots import Snapshots, chain_ids
from paas.errors import BlobNotFoundError, ImageInvalidError, ImageNotFoundError, NameInvalidError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DEFAULT_TAG = "latest"
MIN_ID_PREFIX = 4
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HEX_RE = re.compile(r"(?:sha256:)?([0-9a-f]+)")


def local_architecture() -> str:
    """This machine's architecture in OCI's words (amd64, arm64, ...)."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def normalize_ref(ref: str) -> str:
    """``name[:tag]`` → ``name:tag`` (tag defaults to latest); NameInvalidError if malformed."""
    colon = ref.rfind(":")
    name, tag = (ref[:colon], ref[colon + 1 :]) if colon > ref.rfind("/") else (ref, DEFAULT_TAG)
    if not _NAME_RE.fullmatch(name) or len(name) > 255:
        raise NameInvalidError(f"invalid image name {name!r} in {ref!r}")
    if not _TAG_RE.fullmatch(tag):
        raise NameInvalidError(f"invalid image tag {tag!r} in {ref!r}")
    return f"{name}:{tag}"


def tag_in(ref_or_id: str, refs: Container[str]) -> str | None:
    """The normalized ref when ``ref_or_id`` names one of ``refs``, else None (it is an id)."""
    try:
        ref = normalize_ref(ref_or_id)
    except NameInvalidError:
        return None
    return ref if ref in refs else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Image:
    """An image in the store. ``id`` is the digest of its OCI config JSON."""

    id: str
    config: ImageConfig
    diff_ids: tuple[str, ...]
    layers: tuple[str, ...]
    chain_ids: tuple[str, ...]
    manifest_digest: str
    created: str
    history: tuple[History, ...] = ()
    architecture: str = "amd64"
    os: str = "linux"

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def blobs(self) -> tuple[str, ...]:
        """The content-store digests the image is made of: config, manifest, layers."""
        return (self.id, self.manifest_digest, *self.layers)


def _config_doc(
    config: ImageConfig, diff_ids: tuple[str, ...], history: tuple[History, ...], created: str
) -> dict[str, Any]:
    return {
        "created": created,
        "architecture": local_architecture(),
        "os": "linux",
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [h.to_oci() for h in history],
    }


def _parse_image(image_id: str, manifest_digest: str, manifest: Any, doc: Any) -> Image:
    try:
        diff_ids = tuple(doc["rootfs"]["diff_ids"])
        layers = tuple(layer["digest"] for layer in manifest["layers"])
        history = tuple(
            History(
                str(h.get("created", "")), str(h.get("created_by", "")),
                bool(h.get("empty_layer")), str(h.get("comment", "")),
            )
            for h in doc.get("history") or ()
        )
        for digest in (*diff_ids, *layers):
            check_digest(digest)
        if len(diff_ids) != len(layers):
            raise ImageInvalidError(f"image {image_id}: layers and diff_ids differ in number")
        return Image(
            id=image_id,
            config=ImageConfig.from_oci(doc.get("config")),
            diff_ids=diff_ids,
            layers=layers,
            chain_ids=chain_ids(diff_ids),
            manifest_digest=manifest_digest,
            created=doc.get("created", ""),
            history=history,
            architecture=doc.get("architecture", ""),
            os=doc.get("os", ""),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ImageInvalidError(f"image {image_id}: malformed config or manifest ({e!r})") from None


class ImageStore:
    """Images, their blobs and snapshots, and their tags, under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self.snapshots = Snapshots(self.root / "snapshots")
        self.scratch = self.root / "tmp"
        self.scratch.mkdir(exist_ok=True)
        self._index_path = self.root / "images.json"
        self._lock_path = self.root / "images.lock"
        self._cache: dict[str, Image] = {}

    # --- writing ---

    def commit(
        self,
        parent: Image | None,
        layer_tar_path: Path | None,
        config: ImageConfig,
        history_entry: str,
        *,
        created: str | None = None,
        comment: str = "",
    ) -> Image:
        """A new image: parent's layers, plus the layer tar if given, with this config."""
        created = created or _now()
        diff_ids = parent.diff_ids if parent else ()
        layers = parent.layers if parent else ()
        if layer_tar_path is not None:
            digest = self.content.ingest_file(layer_tar_path)
            # Layers are stored uncompressed, so the blob digest is also the DiffID.
            diff_ids, layers = (*diff_ids, digest), (*layers, digest)
        step = History(created, history_entry, layer_tar_path is None, comment)
        history = (*(parent.history if parent else ()), step)
        config_bytes = _canonical(_config_doc(config, diff_ids, history, created))
        return self.add_image(config_bytes, layers)

    def add_image(self, config_bytes: bytes, layers: tuple[str, ...]) -> Image:
        """Record an image from its OCI config JSON (kept byte for byte: its digest is the id).

        ``layers`` are the digests of uncompressed layer blobs already in the content store, in
        order; they must equal the config's ``rootfs.diff_ids``. Used by builds, ``load`` and
        ``pull``; ImageInvalidError for a config that is not a well-formed image config.
        """
        try:
            doc = json.loads(config_bytes)
        except ValueError as e:
            raise ImageInvalidError(f"image config is not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rootfs"), dict):
            raise ImageInvalidError("image config has no rootfs object")
        if list(doc["rootfs"].get("diff_ids") or []) != list(layers):
            raise ImageInvalidError("image config's rootfs.diff_ids do not match its layers")
        config_digest = digest_bytes(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config_bytes)},
            "layers": [self._descriptor(LAYER_MEDIA_TYPE, d) for d in layers],
        }
        manifest_bytes = _canonical(manifest)
        image = _parse_image(config_digest, digest_bytes(manifest_bytes), manifest, doc)
        # Unpacked before the config and manifest are stored: a layer that fails leaves neither.
        self._ensure_snapshots(image)
        self.content.ingest_bytes(config_bytes, config_digest)
        self.content.ingest_bytes(manifest_bytes, image.manifest_digest)
        with self._index() as index:
            # Checked under the lock: a concurrent prune deletes blobs only while holding it.
            self._check_blobs(image)
            index["images"][image.id] = image.manifest_digest
        return image

    def _check_blobs(self, image: Image) -> None:
        for digest in image.blobs:
            if not self.content.has(digest):
                raise BlobNotFoundError(
                    f"image {image.id}: blob {digest} was removed meanwhile (a concurrent prune?)"
                )

    def _descriptor(self, media_type: str, digest: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": digest, "size": self.content.size(digest)}

    def tag(self, image: Image, ref: str) -> str:
        """Point ``ref`` (``name[:tag]``) at the image; return the normalized ref."""
        ref = normalize_ref(ref)
        with self._index() as index:
            if image.id not in index["images"]:
                raise ImageNotFoundError(f"image {image.id} is not in this store")
            index["tags"][ref] = image.id
        return ref

    def cache_put(self, key: str, image: Image) -> None:
        """Remember that the build step with this cache key produced this image."""
        with self._index() as index:
            if image.id not in index["images"]:
                raise ImageNotFoundError(f"image {image.id} is not in this store")
            index["cache"][key] = image.id

    def cache_get(self, key: str) -> Image | None:
        """The image a build step with this key produced before, if it is still stored."""
        index = self._read_index()
        image_id = index["cache"].get(key)
        if image_id is None or image_id not in index["images"]:
            return None
        return self._load(image_id, index["images"][image_id])

    def remove_tag(self, ref: str) -> None:
        ref = normalize_ref(ref)
        with self._index() as index:
            if index["tags"].pop(ref, None) is None:
                raise ImageNotFoundError(f"no image tagged {ref}")

    # --- reading ---

    def get(self, ref_or_id: str) -> Image:
        """An image by ``name[:tag]``, full id ``sha256:<hex>``, or unique id prefix."""
        index = self._read_index()
        image_id = self._resolve(index, ref_or_id)
        if image_id is None:
            raise ImageNotFoundError(f"no image {ref_or_id!r}")
        return self._load(image_id, index["images"][image_id])

    def has(self, ref_or_id: str) -> bool:
        return self._resolve(self._read_index(), ref_or_id) is not None

    def list(self) -> list[Image]:
        """Every image, tagged or not, newest first."""
        index = self._read_index()
        images = [self._load(i, m) for i, m in index["images"].items()]
        return sorted(images, key=lambda image: image.created, reverse=True)

    def tags(self) -> dict[str, str]:
        """Every ref, mapped to its image id."""
        return dict(sorted(self._read_index()["tags"].items()))

    def refs(self, image: Image) -> builtins.list[str]:
        return [ref for ref, image_id in self.tags().items() if image_id == image.id]

    def lowerdirs(self, image: Image) -> builtins.list[Path]:
        """The snapshot fs dirs of the image, top-most first (overlayfs ``lowerdir=`` order)."""
        self._ensure_snapshots(image)
        return [self.snapshots.path(c) for c in reversed(image.chain_ids)]

    def _ensure_snapshots(self, image: Image) -> None:
        for chain_id, layer in zip(image.chain_ids, image.layers, strict=True):
            if self.snapshots.exists(chain_id):
                continue
            if not self.content.has(layer):
                raise BlobNotFoundError(f"image {image.id}: layer blob {layer} is missing")
            self.snapshots.ensure(chain_id, self.content.path(layer))

    def _resolve(self, index: dict[str, Any], ref_or_id: str) -> str | None:
        with contextlib.suppress(NameInvalidError):
            image_id: str | None = index["tags"].get(normalize_ref(ref_or_id))
            if image_id is not None:
                return image_id
        match = _HEX_RE.fullmatch(ref_or_id)
        if match is None or len(match.group(1)) < MIN_ID_PREFIX:
            return None
        found = [i for i in index["images"] if i.split(":", 1)[1].startswith(match.group(1))]
        return found[0] if len(found) == 1 else None

    def _load(self, image_id: str, manifest_digest: str) -> Image:
        image = self._cache.get(image_id)
        if image is None:
            manifest = self._read_json(manifest_digest)
            if manifest.get("config", {}).get("digest") != image_id:
                raise ImageInvalidError(f"manifest {manifest_digest} is not for image {image_id}")
            image = _parse_image(image_id, manifest_digest, manifest, self._read_json(image_id))
            self._cache[image_id] = image
        return image

    def _read_json(self, digest: str) -> Any:
        try:
            return json.loads(self.content.read_bytes(digest))
        except ValueError as e:
            raise ImageInvalidError(f"blob {digest} is not JSON: {e}") from None

    def size(self, image: Image) -> int:
        """The bytes of the image's layers (uncompressed tars), like Docker's SIZE column."""
        return sum(self.content.size(d) for d in image.layers)

    @contextlib.contextmanager
    def records(self) -> Iterator[Records]:
        """The index, locked, for a decision and removals that no concurrent writer interleaves."""
        with self._index() as index:
            yield Records(self, index)

    # --- the index file ---

    def _read_index(self) -> dict[str, Any]:
        try:
            raw = self._index_path.read_bytes()
        except FileNotFoundError:
            return {"images": {}, "tags": {}, "cache": {}}
        try:
            index = json.loads(raw)
        except ValueError as e:
            raise ImageInvalidError(f"{self._index_path} is corrupt: {e}") from None
        index.setdefault("images", {})
        index.setdefault("tags", {})
        index.setdefault("cache", {})
        index.pop("pending", None)  # an older store's record of what the config mtimes tell
        return dict(index)

    @contextlib.contextmanager
    def _index(self) -> Iterator[dict[str, Any]]:
        """The index, locked for a read-modify-write; written back atomically on a clean exit."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            index = self._read_index()
            yield index
            self._write_index(index)
        finally:
            os.close(fd)

    def _write_index(self, index: dict[str, Any]) -> None:
        data = json.dumps(index, indent=2, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".images.json.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._index_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


class Records:
    """The image index while its lock is held (from ``ImageStore.records``)."""

    def __init__(self, store: ImageStore, index: dict[str, Any]) -> None:
        self._store = store
        self._index = index

    def images(self) -> builtins.list[Image]:
        return [self._store._load(i, m) for i, m in self._index["images"].items()]

    def tags(self) -> dict[str, str]:
        """Every ref, mapped to its image id."""
        return dict(self._index["tags"])

    def cached(self) -> set[str]:
        """The ids of images that are build cache entries."""
        return set(self._index["cache"].values())

    def added(self, image_id: str) -> float:
        """When the image was last added: its config blob is written anew each time."""
        try:
            return self._store.content.path(image_id).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def resolve(self, ref_or_id: str) -> Image:
        """An image by ref, full id or unique id prefix, as ``ImageStore.get`` finds it."""
        image_id = self._store._resolve(self._index, ref_or_id)
        if image_id is None:
            raise ImageNotFoundError(f"no image {ref_or_id!r}")
        return self._store._load(image_id, self._index["images"][image_id])

    def untag(self, ref: str) -> str:
        ref = normalize_ref(ref)
        if self._index["tags"].pop(ref, None) is None:
            raise ImageNotFoundError(f"no image tagged {ref}")
        return ref

    def drop_cache(self, image_id: str) -> None:
        """Forget every build cache entry that points at the image."""
        cache = self._index["cache"]
        for key in [k for k, v in cache.items() if v == image_id]:
            del cache[key]

    def remove(self, image_id: str) -> builtins.list[str]:
        """Delete the image's record, its tags and cache entries; return the refs it had.

        Its blobs and snapshots stay: freeing them is the garbage collector's job.
        """
        if self._index["images"].pop(image_id, None) is None:
            raise ImageNotFoundError(f"image {image_id} is not in this store")
        refs = sorted(r for r, i in self._index["tags"].items() if i == image_id)
        for ref in refs:
            del self._index["tags"][ref]
        self.drop_cache(image_id)
        self._store._cache.pop(image_id, None)
        return refs
