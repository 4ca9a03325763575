"""Reading an image archive, which is untrusted input, into checked plans of images to import.

Only regular files with clean relative names are read; links are skipped and never followed
(podman's docker-archive carries legacy ``<id>/layer.tar`` symlinks that no manifest.json
entry needs), and any other kind of entry, an absolute name or ``..`` refuses the archive.
Members are streamed from the tar by name, never extracted to disk. Manifests, indexes and
configs are size-capped and checked against their digests; a layer's own checks happen when
it is ingested (``ingest.ingest_layer``).
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from paas.engine.content import check_digest, digest_bytes
from paas.engine.images import MANIFEST_MEDIA_TYPE, local_architecture, normalize_ref
from paas.engine.layers import check_inflation
from paas.errors import ImageInvalidError, NameInvalidError

OCI_LAYOUT_FILE = "oci-layout"
OCI_INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
OCI_LAYOUT_VERSION = "1.0.0"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_JSON_BYTES = 8 << 20  # a manifest, index or config larger than this is not a real one
_ARCH = local_architecture()


class Archive:
    """The regular files of a tar, by clean name; read one at a time, never extracted.

    Links are never followed nor read: podman's docker-archive carries legacy
    ``<id>/layer.tar`` symlinks that no manifest.json entry needs, so they are skipped, and
    naming one as a config or layer is an error. Any other kind of entry refuses the archive.
    """

    def __init__(self, tar: tarfile.TarFile, path: Path) -> None:
        self._tar = tar
        self._files: dict[str, tarfile.TarInfo] = {}
        self._links: set[str] = set()
        total = 0
        for member in tar:
            name = _member_name(member)
            if member.issym() or member.islnk():
                self._links.add(name)
            elif member.isreg():
                if name in self._files:
                    raise ImageInvalidError(f"archive: duplicate entry {member.name!r}")
                self._files[name] = member
                total += member.size
        # A compressed archive is read through once above; refuse one that inflates like a bomb.
        check_inflation(total, path.stat().st_size)

    def has(self, name: str) -> bool:
        return name in self._files

    def member(self, name: str, what: str) -> tarfile.TarInfo:
        clean = _clean(name, what)
        if clean in self._links:
            raise ImageInvalidError(f"archive: {what} {name!r} is a link, which is never followed")
        member = self._files.get(clean)
        if member is None:
            raise ImageInvalidError(f"archive: {what} {name!r} is missing")
        return member

    @contextlib.contextmanager
    def stream(self, name: str, what: str) -> Iterator[BinaryIO]:
        src = self._tar.extractfile(self.member(name, what))
        if src is None:
            raise ImageInvalidError(f"archive: {what} {name!r} is not a file")
        with src:
            yield cast(BinaryIO, src)

    def read(self, name: str, what: str, digest: str | None = None) -> bytes:
        """A small member's bytes (a manifest, an index, a config), checked against ``digest``."""
        if self.member(name, what).size > MAX_JSON_BYTES:
            raise ImageInvalidError(f"archive: {what} {name!r} is larger than {MAX_JSON_BYTES} bytes")
        with self.stream(name, what) as src:
            data = src.read(MAX_JSON_BYTES + 1)
        actual = digest_bytes(data)
        if digest is not None and actual != digest:
            raise ImageInvalidError(f"archive: {what} {name!r} is {actual}, expected {digest}")
        return data

    def json(self, name: str, what: str, digest: str | None = None) -> Any:
        try:
            return json.loads(self.read(name, what, digest))
        except ValueError as e:
            raise ImageInvalidError(f"archive: {what} {name!r} is not JSON: {e}") from None


def blob_name(digest: str) -> str:
    """Where an OCI layout keeps the blob with this digest."""
    return f"blobs/sha256/{check_digest(digest)}"


def _member_name(member: tarfile.TarInfo) -> str:
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ImageInvalidError(f"archive: entry {member.name!r} is not a regular file or directory")
    return _clean(member.name, "entry")


def _clean(name: str, what: str) -> str:
    """A member name in canonical form; absolute names and ``..`` are refused."""
    if not isinstance(name, str) or name.startswith("/"):
        raise ImageInvalidError(f"archive: {what} {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or not parts or any("\0" in p for p in parts):
        raise ImageInvalidError(f"archive: {what} {name!r} is not a clean relative path")
    return "/".join(parts)


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[Archive]:
    try:
        with tarfile.open(path, "r:*") as tar:
            yield Archive(tar, Path(path))
    except tarfile.TarError as e:
        raise ImageInvalidError(f"{path}: not a readable tar archive: {e}") from None
    except (OSError, EOFError) as e:
        raise ImageInvalidError(f"{path}: cannot read the archive: {e}") from None




@dataclass(frozen=True, slots=True)
class LayerSource:
    member: str
    digest: str | None  # of the bytes in the archive, when the archive says it
    diff_id: str


@dataclass(frozen=True, slots=True)
class Plan:
    """One image of the archive, checked: its config, where its layers are, its refs."""

    config: bytes
    layers: tuple[LayerSource, ...]
    refs: tuple[str, ...]


def _familiar_ref(name: str, what: str) -> str:
    """A ref as our store keeps it: ``docker.io/library/busybox:1`` → ``busybox:1``."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    try:
        return normalize_ref(name)
    except NameInvalidError as e:
        raise ImageInvalidError(f"archive: {what}: {e}") from None


def _config_diff_ids(config: bytes, what: str) -> tuple[str, ...]:
    """The DiffIDs an image config lists; ImageInvalidError when it is not a config."""
    try:
        doc = json.loads(config)
    except ValueError as e:
        raise ImageInvalidError(f"archive: {what} is not JSON: {e}") from None
    rootfs = doc.get("rootfs") if isinstance(doc, Mapping) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    if not isinstance(diff_ids, list):
        raise ImageInvalidError(f"archive: {what} has no rootfs.diff_ids list")
    for diff_id in diff_ids:
        check_digest(diff_id)
    return tuple(diff_ids)


def _plan(config: bytes, layers: Sequence[tuple[str, str | None]], refs: Sequence[str], what: str) -> Plan:
    """Check a config against its layers (member name, digest) and make the plan."""
    diff_ids = _config_diff_ids(config, what)
    if len(diff_ids) != len(layers):
        raise ImageInvalidError(
            f"archive: {what}: its config lists {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    return Plan(
        config,
        tuple(LayerSource(m, d, i) for (m, d), i in zip(layers, diff_ids, strict=True)),
        tuple(refs),
    )


def docker_plans(archive: Archive) -> list[Plan]:
    """The images of Docker's ``manifest.json`` (docker save, podman's docker-archive, ours)."""
    doc = archive.json(DOCKER_MANIFEST_FILE, "manifest")
    if not isinstance(doc, list):
        raise ImageInvalidError("archive: manifest.json is not a list of images")
    plans = []
    for n, entry in enumerate(doc):
        what = f"manifest.json entry {n}"
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("Config"), str)
            or not _strings(entry.get("Layers"))
            or not (entry.get("RepoTags") is None or _strings(entry.get("RepoTags")))
        ):
            raise ImageInvalidError(f"archive: {what} is malformed (needs Config, Layers, RepoTags)")
        config = archive.read(entry["Config"], "config", _digest_in_name(entry["Config"]))
        layers = [(name, _digest_in_name(name)) for name in entry["Layers"]]
        refs = [_familiar_ref(tag, what) for tag in entry.get("RepoTags") or ()]
        plans.append(_plan(config, layers, refs, what))
    return plans


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _digest_in_name(name: str) -> str | None:
    """The digest an OCI-layout blob name states (``blobs/sha256/<hex>``); None for other names."""
    head, _, hex_part = name.removeprefix("./").rpartition("/")
    if head != "blobs/sha256":
        return None
    check_digest(f"sha256:{hex_part}")
    return f"sha256:{hex_part}"


def oci_plans(archive: Archive) -> list[Plan]:
    """The images an OCI layout's ``index.json`` lists (podman's oci-archive, skopeo's, ours)."""
    if not archive.has(OCI_LAYOUT_FILE):
        raise ImageInvalidError("archive: index.json without an oci-layout file")
    layout = archive.json(OCI_LAYOUT_FILE, "oci-layout")
    if not isinstance(layout, Mapping) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise ImageInvalidError("archive: oci-layout has no imageLayoutVersion")
    plans = []
    for n, descriptor in enumerate(_descriptors(archive.json(OCI_INDEX_FILE, "index"), "index.json")):
        what = f"index.json manifest {n}"
        refs = _oci_refs(descriptor.get("annotations"), what)
        manifest = _pick_manifest(archive, descriptor, what)
        plans.append(_oci_plan(archive, manifest, refs, what))
    return plans


def _descriptors(doc: Any, what: str) -> list[Mapping[str, Any]]:
    manifests = doc.get("manifests") if isinstance(doc, Mapping) else None
    if not isinstance(manifests, list) or not all(isinstance(m, Mapping) for m in manifests):
        raise ImageInvalidError(f"archive: {what} has no manifests list")
    for descriptor in manifests:
        _descriptor_digest(descriptor, what)
    return manifests


def _descriptor_digest(descriptor: Any, what: str) -> str:
    if not isinstance(descriptor, Mapping) or not isinstance(descriptor.get("digest"), str):
        raise ImageInvalidError(f"archive: {what}: a descriptor has no digest")
    check_digest(descriptor["digest"])
    return str(descriptor["digest"])


def _pick_manifest(archive: Archive, descriptor: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The manifest descriptor itself, or the linux one of this machine from a nested index."""
    media_type = descriptor.get("mediaType")
    if media_type in (MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE):
        return descriptor
    if media_type not in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE):
        raise ImageInvalidError(f"archive: {what} has unsupported media type {media_type!r}")
    digest = _descriptor_digest(descriptor, what)
    for inner in _descriptors(archive.json(blob_name(digest), "index", digest), what):
        wanted = inner.get("platform") or {}
        if wanted.get("os") == "linux" and wanted.get("architecture") == _ARCH:
            return _pick_manifest(archive, inner, what)
    raise ImageInvalidError(f"archive: {what} has no image for linux/{_ARCH}")


def _oci_plan(
    archive: Archive, descriptor: Mapping[str, Any], refs: list[str], what: str
) -> Plan:
    digest = _descriptor_digest(descriptor, what)
    manifest = archive.json(blob_name(digest), "manifest", digest)
    layers = manifest.get("layers") if isinstance(manifest, Mapping) else None
    if not isinstance(layers, list):
        raise ImageInvalidError(f"archive: {what}: manifest {digest} has no layers list")
    config_digest = _descriptor_digest(manifest.get("config"), f"{what} config")
    config = archive.read(blob_name(config_digest), "config", config_digest)
    layer_digests = [_descriptor_digest(layer, f"{what} layer") for layer in layers]
    return _plan(config, [(blob_name(d), d) for d in layer_digests], refs, what)


def _oci_refs(annotations: Any, what: str) -> list[str]:
    """The image name an index entry gives: containerd's full name, else a ref.name that is one."""
    if not isinstance(annotations, Mapping):
        return []
    name = annotations.get(CONTAINERD_NAME)
    if not isinstance(name, str):
        name = annotations.get(REF_NAME)
        # The OCI ref name is often only a tag ("latest"), which names no image.
        if not isinstance(name, str) or not ("/" in name or ":" in name):
            return []
    return [_familiar_ref(name, what)]
