"""Images: OCI image configs and manifests, their tags, and the store that keeps them.

An image is an OCI config blob (its digest is the image id) plus a manifest
blob listing the layer blobs, all in the content store; each layer is also
unpacked as a snapshot keyed by its ChainID. ``images.json`` maps image ids to
manifest digests, refs (``name:tag``) to image ids, and build cache keys to the
image each build step produced; it is rewritten atomically under an fcntl lock.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paas.engine.content import ContentStore, check_digest
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


def normalize_ref(ref: str) -> str:
    """``name[:tag]`` → ``name:tag`` (tag defaults to latest); NameInvalidError if malformed."""
    colon = ref.rfind(":")
    name, tag = (ref[:colon], ref[colon + 1 :]) if colon > ref.rfind("/") else (ref, DEFAULT_TAG)
    if not _NAME_RE.fullmatch(name) or len(name) > 255:
        raise NameInvalidError(f"invalid image name {name!r} in {ref!r}")
    if not _TAG_RE.fullmatch(tag):
        raise NameInvalidError(f"invalid image tag {tag!r} in {ref!r}")
    return f"{name}:{tag}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What a container made from the image runs, and how (the OCI ``config`` object)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stop_signal: str = ""
    # Docker's extensions of the OCI config, which OCI tools carry through unchanged.
    healthcheck: Mapping[str, Any] | None = None  # {"Test": [...], "Interval": ns, ...}
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A private sorted copy: the caller's dict may change later; JSON order stays stable.
        object.__setattr__(self, "labels", dict(sorted(dict(self.labels).items())))

    def replace(self, **changes: Any) -> ImageConfig:
        return dataclasses.replace(self, **changes)

    def env_dict(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.env)

    def with_env(self, key: str, value: str) -> ImageConfig:
        """A copy with ``key`` set, keeping the position of an existing entry."""
        entry = f"{key}={value}"
        if key not in self.env_dict():
            return self.replace(env=(*self.env, entry))
        return self.replace(env=tuple(entry if e.partition("=")[0] == key else e for e in self.env))

    def to_oci(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "Env": list(self.env) or None,
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "WorkingDir": self.working_dir or None,
            "User": self.user or None,
            "ExposedPorts": {p: {} for p in self.exposed_ports} or None,
            "Volumes": {v: {} for v in self.volumes} or None,
            "Labels": dict(self.labels) or None,
            "StopSignal": self.stop_signal or None,
            "Healthcheck": None if self.healthcheck is None else dict(self.healthcheck),
            "Shell": None if self.shell is None else list(self.shell),
            "OnBuild": list(self.on_build) or None,
        }
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_oci(cls, doc: Mapping[str, Any] | None) -> ImageConfig:
        """Read an OCI ``config`` object; ImageInvalidError when a field has the wrong type."""
        doc = doc or {}
        if not isinstance(doc, Mapping):
            raise ImageInvalidError("image config: 'config' is not an object")
        healthcheck = doc.get("Healthcheck")
        if healthcheck is not None and not isinstance(healthcheck, Mapping):
            raise ImageInvalidError("image config: Healthcheck is not an object")
        return cls(
            env=_strings(doc, "Env") or (),
            cmd=_strings(doc, "Cmd"),
            entrypoint=_strings(doc, "Entrypoint"),
            working_dir=_string(doc, "WorkingDir"),
            user=_string(doc, "User"),
            exposed_ports=tuple(sorted(_object(doc, "ExposedPorts"))),
            volumes=tuple(sorted(_object(doc, "Volumes"))),
            labels={k: str(v) for k, v in _object(doc, "Labels").items()},
            stop_signal=_string(doc, "StopSignal"),
            healthcheck=healthcheck,
            shell=_strings(doc, "Shell"),
            on_build=_strings(doc, "OnBuild") or (),
        )


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageInvalidError(f"image config: {key} is not a list of strings")
    return tuple(value)


def _string(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key) or ""
    if not isinstance(value, str):
        raise ImageInvalidError(f"image config: {key} is not a string")
    return value


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise ImageInvalidError(f"image config: {key} is not an object")
    return value


@dataclass(frozen=True, slots=True)
class History:
    """One step that made the image (an OCI history entry)."""

    created: str
    created_by: str
    empty_layer: bool = False

    def to_oci(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"created": self.created, "created_by": self.created_by}
        if self.empty_layer:
            doc["empty_layer"] = True
        return doc


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


def _config_doc(
    config: ImageConfig, diff_ids: tuple[str, ...], history: tuple[History, ...], created: str
) -> dict[str, Any]:
    return {
        "created": created,
        "architecture": _ARCHITECTURES.get(platform.machine(), platform.machine()),
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
            History(h.get("created", ""), h.get("created_by", ""), bool(h.get("empty_layer")))
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
    ) -> Image:
        """A new image: parent's layers, plus the layer tar if given, with this config."""
        created = created or _now()
        diff_ids = parent.diff_ids if parent else ()
        layers = parent.layers if parent else ()
        if layer_tar_path is not None:
            digest = self.content.ingest_file(layer_tar_path)
            # Layers are stored uncompressed, so the blob digest is also the DiffID.
            diff_ids, layers = (*diff_ids, digest), (*layers, digest)
        step = History(created, history_entry, empty_layer=layer_tar_path is None)
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
        config_digest = self.content.ingest_bytes(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self._descriptor(CONFIG_MEDIA_TYPE, config_digest),
            "layers": [self._descriptor(LAYER_MEDIA_TYPE, d) for d in layers],
        }
        manifest_digest = self.content.ingest_bytes(_canonical(manifest))
        image = _parse_image(config_digest, manifest_digest, manifest, doc)
        self._ensure_snapshots(image)
        with self._index() as index:
            index["images"][image.id] = manifest_digest
        return image

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
