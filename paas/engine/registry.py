"""The OCI distribution (Registry v2) client: image references, push and pull.

Push sends each blob the registry lacks (HEAD to check, POST + one streamed PUT to
upload), then the manifest exactly as the store keeps it. Pull fetches a manifest
(picking this machine's platform from an index), the config and every layer the store
lacks, checking each against its digest (and each layer against its DiffID) before the
image is recorded and tagged; nothing is tagged when any step fails.

``insecure=True`` speaks plain HTTP to the registry (and to its token server), like
skopeo's ``--tls-verify=false``: meant for registries on loopback, allowed for any host
the user names, because the user asked for it.
"""

from __future__ import annotations

import collections
import http.client
import re
from collections.abc import Callable
from dataclasses import dataclass

from paas.core.units import human_size
from paas.engine import registry_manifest as rm
from paas.engine.content import ContentStore, check_digest, digest_bytes
from paas.engine.images import Image, ImageStore, normalize_ref
from paas.engine.ingest import ingest_layer
from paas.engine.registry_http import RegistrySession, check, error_detail
from paas.errors import ImageInvalidError, ImageNotFoundError, NameInvalidError, RegistryError

Log = Callable[[str], None]

DEFAULT_TAG = "latest"
DEFAULT_TIMEOUT_S = 60.0
NO_REGISTRY = "no registry configured: name one (host:port/name) or set PAAS_REGISTRY"
_HOST_RE = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A remote image: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, default_registry: str = "") -> Reference:
    """``[host[:port]/]repo/path[:tag][@sha256:...]`` -> Reference.

    The first component names a registry when it has a ``.`` or ``:`` or is ``localhost``;
    otherwise ``default_registry`` is used, and RegistryError says how to set one if it is empty.
    """
    rest, _, digest = text.partition("@")
    if digest:
        try:
            check_digest(digest)
        except ImageInvalidError:
            raise NameInvalidError(f"invalid digest {digest!r} in {text!r}: want sha256:<64 hex>") from None
    colon = rest.rfind(":")
    tag = None
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise NameInvalidError(f"invalid tag {tag!r} in {text!r}")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
        if not _HOST_RE.fullmatch(registry):
            raise NameInvalidError(f"invalid registry host {registry!r} in {text!r}")
    elif not default_registry:
        raise RegistryError(NO_REGISTRY)
    else:
        registry, repository = default_registry, rest
    if not _REPOSITORY_RE.fullmatch(repository) or len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise NameInvalidError(
            f"invalid repository name {repository!r} in {text!r}: lower-case letters, digits and "
            "separators (. _ __ -), components joined by /"
        )
    return Reference(registry, repository, tag, digest or None)


class RegistryClient:
    """Push and pull images; one keep-alive session per registry host, tokens cached per scope.

    ``default_registry`` only decides which pulls also get the short local tag ``name:tag``.
    ``requests`` counts the HTTP requests sent, by method.
    """

    def __init__(
        self,
        *,
        insecure: bool = False,
        credentials: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        default_registry: str = "",
    ) -> None:
        self.insecure = insecure
        self.credentials = credentials
        self.timeout = timeout
        self.default_registry = default_registry
        self.requests: collections.Counter[str] = collections.Counter()
        self._sessions: dict[str, RegistrySession] = {}

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, host: str) -> RegistrySession:
        if host not in self._sessions:
            self._sessions[host] = RegistrySession(
                host, insecure=self.insecure, credentials=self.credentials, timeout=self.timeout,
                counts=self.requests,
            )
        return self._sessions[host]

    # --- push ---

    def push(self, images: ImageStore, local_ref: str, remote: Reference, log: Log) -> str:
        """Send a local image to ``remote`` (tag ``latest`` if it names none); return the manifest digest."""
        image = images.get(local_ref)
        manifest_bytes = images.content.read_bytes(image.manifest_digest)
        blobs = rm.blobs_of_stored_manifest(manifest_bytes, image.manifest_digest)
        session = self._session(remote.registry)
        scope = f"repository:{remote.repository}:pull,push"
        log(f"Pushing {local_ref} to {remote}")
        for digest, size in blobs:
            self._push_blob(session, images.content, remote, scope, digest, size, log)
        reference = remote.digest if remote.digest and not remote.tag else (remote.tag or DEFAULT_TAG)
        pushed = self._put_manifest(session, remote, scope, reference, manifest_bytes)
        log(f"{reference}: digest: {pushed} size: {len(manifest_bytes)}")
        return pushed

    def _push_blob(
        self, session: RegistrySession, content: ContentStore, remote: Reference, scope: str,
        digest: str, size: int, log: Log,
    ) -> None:
        short = digest.split(":", 1)[1][:12]
        if self._blob_exists(session, remote, scope, digest):
            log(f"{short}: already exists")
            return
        what = f"uploading blob {digest} to {remote.name}"
        response = session.request("POST", f"/v2/{remote.repository}/blobs/uploads/", scope=scope,
                                   what=what, headers={"Content-Length": "0"})
        location = response.headers.get("Location")
        check(session, response, what, (202,))
        session.discard(response)
        if not location:
            raise RegistryError(f"{what}: registry {session.host} gave no upload location")
        target = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        with content.open(digest) as f:
            response = session.request("PUT", target, scope=scope, what=what, body=f, size=size,
                                       headers={"Content-Type": "application/octet-stream"})
        check(session, response, what, (201,))
        _check_digest_header(response, digest, what)
        session.discard(response)
        log(f"{short}: pushed {human_size(size)}")

    def _blob_exists(self, session: RegistrySession, remote: Reference, scope: str, digest: str) -> bool:
        what = f"checking for blob {digest} in {remote.name}"
        response = session.request("HEAD", f"/v2/{remote.repository}/blobs/{digest}", scope=scope,
                                   what=what)
        if response.status == 404:
            session.discard(response)
            return False
        check(session, response, what, (200,))
        session.discard(response)
        return True

    def _put_manifest(
        self, session: RegistrySession, remote: Reference, scope: str, reference: str, manifest: bytes
    ) -> str:
        what = f"pushing the manifest of {remote}"
        expected = digest_bytes(manifest)
        if reference.startswith("sha256:") and reference != expected:
            raise RegistryError(f"{what}: the image's manifest is {expected}, not {reference}")
        response = session.request(
            "PUT", f"/v2/{remote.repository}/manifests/{reference}", scope=scope, what=what,
            body=manifest, headers={"Content-Type": rm.OCI_MANIFEST},
        )
        check(session, response, what, (201,))
        _check_digest_header(response, expected, what)
        session.discard(response)
        return expected

    # --- pull ---

    def pull(self, images: ImageStore, remote: Reference, log: Log) -> Image:
        """Fetch ``remote`` into the store, verify every blob, then tag it; return the image."""
        refs = [normalize_ref(ref) for ref in self._local_refs(remote)]  # bad names fail before any work
        session = self._session(remote.registry)
        scope = f"repository:{remote.repository}:pull"
        log(f"Pulling {remote}")
        manifest = self._fetch_manifest(session, remote, scope, remote.reference)
        top_digest = manifest.digest  # what the tag names: the index, for a multi-platform image
        if manifest.is_index:
            chosen = rm.choose_platform(manifest, str(remote))
            manifest = self._fetch_manifest(session, remote, scope, chosen)
            if manifest.is_index:
                raise ImageInvalidError(f"{remote}: an index inside an index is not supported")
        image = self._pull_image(session, images, remote, scope, manifest, log)
        log(f"Digest: {top_digest}")
        for ref in refs:
            images.tag(image, ref)
            log(f"Tagged {ref}")
        return image

    def _pull_image(
        self, session: RegistrySession, images: ImageStore, remote: Reference, scope: str,
        manifest: rm.Manifest, log: Log,
    ) -> Image:
        image_manifest = rm.parse_image_manifest(manifest, str(remote))
        config_bytes = self._fetch_config(session, remote, scope, image_manifest.config)
        diff_ids = rm.diff_ids_of(config_bytes, image_manifest, str(remote))
        warning = rm.platform_warning(config_bytes)
        if warning:
            log(warning)
        for layer, diff_id in zip(image_manifest.layers, diff_ids, strict=True):
            short = diff_id.split(":", 1)[1][:12]
            if images.content.has(diff_id):
                log(f"{short}: already exists")
                continue
            self._fetch_layer(session, images.content, remote, scope, layer, diff_id)
            log(f"{short}: pulled {human_size(layer.size)}")
        return images.add_image(config_bytes, diff_ids)

    def _fetch_manifest(
        self, session: RegistrySession, remote: Reference, scope: str, reference: str
    ) -> rm.Manifest:
        what = f"pulling {remote}"
        response = session.request(
            "GET", f"/v2/{remote.repository}/manifests/{reference}", scope=scope, what=what,
            headers={"Accept": ", ".join(rm.ACCEPTED_MANIFESTS)},
        )
        if response.status == 404:
            detail = error_detail(response)
            session.discard(response)
            raise ImageNotFoundError(f"{remote}: not found in registry {remote.registry} ({detail})")
        check(session, response, what, (200,))
        with session.streaming(response, what):
            body = rm.read_capped(response, rm.MAX_MANIFEST_BYTES, f"{what}: the manifest")
        digest = digest_bytes(body)
        expected = reference if reference.startswith("sha256:") else response.headers.get(
            "Docker-Content-Digest")
        if expected and expected != digest:
            raise ImageInvalidError(f"{what}: the manifest is {digest}, but the registry promised {expected}")
        return rm.parse_manifest(body, digest, response.headers.get("Content-Type", ""), str(remote))

    def _fetch_config(
        self, session: RegistrySession, remote: Reference, scope: str, config: rm.Descriptor
    ) -> bytes:
        what = f"pulling the config of {remote}"
        response = self._get_blob(session, remote, scope, config.digest, what)
        with session.streaming(response, what):
            body = rm.read_capped(response, rm.MAX_CONFIG_BYTES, f"{what}: blob {config.digest}")
        if digest_bytes(body) != config.digest:
            raise ImageInvalidError(f"{what}: blob is {digest_bytes(body)}, expected {config.digest}")
        return body

    def _fetch_layer(
        self, session: RegistrySession, content: ContentStore, remote: Reference, scope: str,
        layer: rm.Descriptor, diff_id: str,
    ) -> None:
        what = f"pulling layer {layer.digest} of {remote}"
        response = self._get_blob(session, remote, scope, layer.digest, what)
        if response.length is not None and response.length != layer.size:
            session.discard(response)
            raise ImageInvalidError(f"{what}: the registry sends {response.length} bytes, "
                                    f"the manifest says {layer.size}")
        try:
            with session.streaming(response, what):
                ingest_layer(content, response, digest=layer.digest, diff_id=diff_id)
        except ImageInvalidError as e:
            # the same class (a bomb stays a LayerUnsafeError), with the layer and image named
            raise type(e)(f"{what}: {e}") from None

    def _get_blob(
        self, session: RegistrySession, remote: Reference, scope: str, digest: str, what: str
    ) -> http.client.HTTPResponse:
        path = f"/v2/{remote.repository}/blobs/{digest}"
        response = session.request("GET", path, scope=scope, what=what)
        if response.status == 404:
            session.discard(response)
            raise ImageInvalidError(f"{what}: registry {remote.registry} lacks blob {digest} "
                                    "that the manifest lists")
        check(session, response, what, (200,))
        return response

    def _local_refs(self, remote: Reference) -> list[str]:
        """The local tags a pull sets: ``host/name:tag``, plus ``name:tag`` for the default registry."""
        if remote.tag is None and remote.digest is not None:
            return []  # a pull by digest alone names no tag to set
        tag = remote.tag or DEFAULT_TAG
        refs = [f"{remote.name}:{tag}"]
        if self.default_registry and remote.registry == self.default_registry:
            refs.append(f"{remote.repository}:{tag}")
        return refs


def _check_digest_header(response: http.client.HTTPResponse, expected: str, what: str) -> None:
    got = response.headers.get("Docker-Content-Digest")
    if got and got != expected:
        raise RegistryError(f"{what}: the registry stored {got}, but we sent {expected}")


