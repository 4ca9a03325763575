"""The Registry v2 client against a real docker-registry on loopback, with skopeo for interop."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from registryd import BasicAuth, RegistryServer, TokenServer, start_registry, start_token_server
from testkit import paas_argv, random_subnet

from paas.config import Settings
from paas.engine import layers
from paas.engine.baseimages import build_busybox
from paas.engine.images import Image, ImageConfig, ImageStore
from paas.engine.registry import RegistryClient, parse_reference
from paas.engine.registry_auth import parse_challenge
from paas.engine.registry_manifest import (
    OCI_MANIFEST,
    diff_ids_of,
    local_platform,
    parse_image_manifest,
    parse_manifest,
)
from paas.errors import (
    ImageInvalidError,
    ImageNotFoundError,
    LayerUnsafeError,
    NameInvalidError,
    RegistryError,
)

USER, PASSWORD = "alice", "s3cret"
SKOPEO_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, Image]:
    """A store with busybox plus one small committed layer, tagged app:v1."""
    root = tmp_path_factory.mktemp("source")
    store = ImageStore(root / "images")
    base = build_busybox(store, lambda _: None)
    image = _commit_layer(store, base, root, {"app/hello.txt": "hello from the registry test\n"})
    store.tag(image, "app:v1")
    return store, image


def _commit_layer(store: ImageStore, parent: Image, tmp: Path, files: dict[str, str]) -> Image:
    tree = tmp / f"tree-{secrets.token_hex(4)}"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    tar = tree.with_suffix(".tar")
    layers.tar_directory(tree, tar)
    return store.commit(parent, tar, ImageConfig(cmd=("cat", f"/{next(iter(files))}")), "add files")


@pytest.fixture
def empty_store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "pulled")


def _client(**kw: object) -> RegistryClient:
    return RegistryClient(insecure=True, **kw)  # type: ignore[arg-type]


def _unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def _push(registry: RegistryServer, store: ImageStore, local: str, repo: str, tag: str = "v1") -> str:
    with _client() as client:
        return client.push(store, local, parse_reference(f"{registry.host}/{repo}:{tag}"), lambda _: None)


# --- references ---


def test_parse_reference_forms() -> None:
    ref = parse_reference("127.0.0.1:5000/team/app:v2")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:5000", "team/app", "v2", None)
    digest = "sha256:" + "a" * 64
    ref = parse_reference(f"localhost/app@{digest}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("localhost", "app", None, digest)
    assert ref.reference == digest
    ref = parse_reference("team/app", default_registry="reg.local:5000")
    assert (ref.registry, ref.repository, ref.reference) == ("reg.local:5000", "team/app", "latest")
    assert str(parse_reference("reg.example.com/a:t@" + digest)) == f"reg.example.com/a:t@{digest}"


def test_parse_reference_errors() -> None:
    with pytest.raises(RegistryError, match="no registry configured.*PAAS_REGISTRY"):
        parse_reference("app:v1")
    for bad in ("reg.local/App", "reg.local/a@sha256:12", "reg.local/a:bad/tag", "reg.local/a//b",
                "reg.local/a:"):
        with pytest.raises(NameInvalidError):
            parse_reference(bad)


def test_parse_challenge() -> None:
    header = 'Bearer realm="https://a/token",service="reg, x",scope="repository:a:pull,push"'
    challenge = parse_challenge(header)
    assert challenge is not None and challenge.scheme == "bearer"
    assert dict(challenge.params) == {"realm": "https://a/token", "service": "reg, x",
                                      "scope": "repository:a:pull,push"}


_CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64,
           "size": 2}
_LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "d" * 64,
          "size": 3}


@pytest.mark.parametrize(("body", "error"), [
    (b"{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"schemaVersion": 1, "fsLayers": []}', "schema 1"),
    (json.dumps({"mediaType": "application/x-other", "layers": []}).encode(), "unsupported manifest"),
    (json.dumps({"schemaVersion": 2, "config": _CONFIG, "layers": {}}).encode(), "no layers list"),
    (json.dumps({"config": {**_CONFIG, "digest": "md5:x"}, "layers": []}).encode(), "unusable digest"),
    (json.dumps({"config": {**_CONFIG, "size": "2"}, "layers": []}).encode(), "malformed size"),
    (json.dumps({"config": {**_CONFIG, "mediaType": "application/x-helm"}, "layers": []}).encode(),
     "not a container image"),
    (json.dumps({"config": _CONFIG, "layers": [{**_LAYER, "mediaType": "text/plain"}]}).encode(),
     "not a tar layer"),
])
def test_malformed_manifests_are_refused(body: bytes, error: str) -> None:
    with pytest.raises(ImageInvalidError, match=error):
        parse_image_manifest(parse_manifest(body, "sha256:" + "e" * 64, OCI_MANIFEST, "r"), "r")


def test_config_diff_ids_must_match_the_layers() -> None:
    doc = json.dumps({"config": _CONFIG, "layers": [_LAYER]}).encode()
    manifest = parse_image_manifest(parse_manifest(doc, "sha256:" + "e" * 64, "", "r"), "r")
    for config, error in ((b"{}", "no rootfs.diff_ids"), (b'{"rootfs": {"diff_ids": []}}', "0 DiffIDs for 1"),
                          (b'{"rootfs": {"diff_ids": ["x"]}}', "unusable DiffID")):
        with pytest.raises(ImageInvalidError, match=error):
            diff_ids_of(config, manifest, "r")


# --- push and pull ---


def test_push_then_pull_into_an_empty_store(
    registry: RegistryServer, source: tuple[ImageStore, Image], empty_store: ImageStore
) -> None:
    store, image = source
    repo = _unique("team/app")
    digest = _push(registry, store, "app:v1", repo)
    assert digest == image.manifest_digest
    output: list[str] = []
    with _client(default_registry=registry.host) as client:
        pulled = client.pull(empty_store, parse_reference(f"{repo}:v1", registry.host), output.append)
    assert (pulled.id, pulled.diff_ids, pulled.config) == (image.id, image.diff_ids, image.config)
    assert empty_store.tags() == {f"{registry.host}/{repo}:v1": image.id, f"{repo}:v1": image.id}
    top = empty_store.lowerdirs(pulled)[0]
    assert (top / "app" / "hello.txt").read_text() == "hello from the registry test\n"
    assert (empty_store.lowerdirs(pulled)[-1] / "bin" / "busybox").is_file()
    assert f"Digest: {digest}" in output
    with _client() as client:
        client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:v1"), lambda _: None)
        assert client.requests == {"GET": 2}  # the manifest and the config: every layer is here


def test_second_push_sends_no_blob(registry: RegistryServer, source: tuple[ImageStore, Image]) -> None:
    store, image = source
    repo = _unique("again")
    _push(registry, store, "app:v1", repo)
    output: list[str] = []
    with _client() as client:
        client.push(store, "app:v1", parse_reference(f"{registry.host}/{repo}:v1"), output.append)
        assert client.requests == {"HEAD": len(image.layers) + 1, "PUT": 1}
    assert sum("already exists" in line for line in output) == len(image.layers) + 1


def test_push_uploads_only_missing_blobs(registry: RegistryServer, source: tuple[ImageStore, Image],
                                         tmp_path: Path) -> None:
    store, image = source
    repo = _unique("grow")
    _push(registry, store, "app:v1", repo)
    child = _commit_layer(store, image, tmp_path, {"extra.txt": secrets.token_hex(8)})
    with _client() as client:
        client.push(store, child.id, parse_reference(f"{registry.host}/{repo}:v2"), lambda _: None)
        # the new layer and the new config are uploaded; the shared layers are not
        assert client.requests["POST"] == 2
        assert client.requests["PUT"] == 3


def test_pull_by_digest(registry: RegistryServer, source: tuple[ImageStore, Image],
                        empty_store: ImageStore) -> None:
    store, image = source
    repo = _unique("bydigest")
    digest = _push(registry, store, "app:v1", repo)
    with _client() as client:
        pulled = client.pull(empty_store, parse_reference(f"{registry.host}/{repo}@{digest}"), lambda _: None)
    assert pulled.id == image.id
    assert empty_store.tags() == {}  # a digest names no tag to set
    unknown = "sha256:" + "0" * 64
    with _client() as client, pytest.raises(ImageNotFoundError, match=f"{repo}@{unknown}"):
        client.pull(empty_store, parse_reference(f"{registry.host}/{repo}@{unknown}"), lambda _: None)


def test_pull_unknown_tag_or_repository(registry: RegistryServer, empty_store: ImageStore) -> None:
    for name in ("nosuch/repo:v1", "nosuch/repo"):
        ref = parse_reference(f"{registry.host}/{name}")
        with _client() as client, pytest.raises(ImageNotFoundError, match=f"{registry.host}/nosuch/repo"):
            client.pull(empty_store, ref, lambda _: None)


def test_tampered_layer_fails_and_tags_nothing(
    registry: RegistryServer, source: tuple[ImageStore, Image], empty_store: ImageStore, tmp_path: Path
) -> None:
    store, image = source
    child = _commit_layer(store, image, tmp_path, {"secret.txt": "original content " * 100})
    repo = _unique("tampered")
    store.tag(child, f"{repo}:v1")
    _push(registry, store, f"{repo}:v1", repo)
    blob = registry.blob_path(child.layers[-1])
    data = bytearray(blob.read_bytes())
    data[data.index(b"original")] ^= 0x20  # same length, different bytes
    blob.write_bytes(bytes(data))
    with _client() as client, pytest.raises(ImageInvalidError, match=child.layers[-1]):
        client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:v1"), lambda _: None)
    assert empty_store.tags() == {}
    assert empty_store.list() == []
    assert not empty_store.content.has(child.layers[-1])


def test_unreachable_and_tls_errors(registry: RegistryServer, empty_store: ImageStore) -> None:
    closed = parse_reference(f"127.0.0.1:{_closed_port()}/a:v1")
    with _client() as client, pytest.raises(RegistryError, match="unreachable.*connection refused"):
        client.pull(empty_store, closed, lambda _: None)
    plain = parse_reference(f"{registry.host}/a:v1")
    with RegistryClient() as client, pytest.raises(RegistryError, match="--insecure"):
        client.pull(empty_store, plain, lambda _: None)


def test_https_registry(tmp_path: Path, source: tuple[ImageStore, Image], empty_store: ImageStore,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    store, image = source
    server = start_registry(tmp_path / "tls", tls=True)
    try:
        remote = parse_reference(f"{server.host}/secure/app:v1")
        with RegistryClient() as client, pytest.raises(RegistryError, match="certificate.*not trusted"):
            client.push(store, "app:v1", remote, lambda _: None)
        # OpenSSL reads SSL_CERT_FILE when the client builds its TLS context: trust the registry's cert.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_path))
        with RegistryClient() as client:
            client.push(store, "app:v1", remote, lambda _: None)
            assert client.pull(empty_store, remote, lambda _: None).id == image.id
    finally:
        server.stop()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_index_picks_this_platform(registry: RegistryServer, source: tuple[ImageStore, Image],
                                   empty_store: ImageStore, tmp_path: Path) -> None:
    store, image = source
    other = _commit_layer(store, image, tmp_path, {"other.txt": "another platform"})
    repo = _unique("multi")
    ours = _push(registry, store, "app:v1", repo, tag="native")
    theirs = _push(registry, store, other.id, repo, tag="foreign")
    os_, arch = local_platform()
    foreign = "s390x" if arch != "s390x" else "riscv64"
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        _index_entry(store, theirs, os_, foreign), _index_entry(store, ours, os_, arch)]}
    _put_manifest(registry, repo, "multi", json.dumps(index).encode(), index["mediaType"])
    with _client() as client:
        pulled = client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:multi"), lambda _: None)
    assert pulled.id == image.id
    index["manifests"] = index["manifests"][:1]
    _put_manifest(registry, repo, "foreign-only", json.dumps(index).encode(), index["mediaType"])
    with _client() as client, pytest.raises(ImageNotFoundError, match=f"no image for linux/{arch}"):
        client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:foreign-only"), lambda _: None)


def _index_entry(store: ImageStore, digest: str, os_: str, arch: str) -> dict[str, object]:
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": store.content.size(digest), "platform": {"os": os_, "architecture": arch}}


def _put_manifest(registry: RegistryServer, repo: str, tag: str, body: bytes, media_type: str) -> None:
    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": media_type})
        response = conn.getresponse()
        assert response.status == 201, response.read()
    finally:
        conn.close()


# --- interop with skopeo ---


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result


def test_skopeo_reads_what_we_push(registry: RegistryServer, source: tuple[ImageStore, Image],
                                   tmp_path: Path) -> None:
    store, image = source
    repo = _unique("interop/ours")
    digest = _push(registry, store, "app:v1", repo)
    url = f"docker://{registry.host}/{repo}:v1"
    inspected = json.loads(_skopeo("inspect", "--tls-verify=false", url).stdout)
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == list(image.layers)
    layout = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", url, f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_oci_blob(layout, index["manifests"][0]["digest"]))
    assert manifest["config"]["digest"] == image.id
    assert json.loads(_oci_blob(layout, image.id))["rootfs"]["diff_ids"] == list(image.diff_ids)


def _oci_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


@pytest.mark.parametrize("format_", ["oci", "v2s2"])
def test_we_pull_what_skopeo_pushed(registry: RegistryServer, empty_store: ImageStore, tmp_path: Path,
                                    format_: str) -> None:
    layout, diff_id = _hand_made_layout(tmp_path / "layout")
    repo = _unique(f"interop/{format_}")
    _skopeo("copy", "--dest-tls-verify=false", f"--format={format_}", f"oci:{layout}:v1",
            f"docker://{registry.host}/{repo}:v1")
    with _client() as client:
        pulled = client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:v1"), lambda _: None)
    assert pulled.diff_ids == (diff_id,)
    assert pulled.config.cmd == ("/bin/hello",)
    assert (empty_store.lowerdirs(pulled)[0] / "bin" / "hello").read_text() == "hi from skopeo\n"
    assert empty_store.content.has(diff_id)  # stored uncompressed: blob digest == DiffID


def test_unsafe_layer_from_a_registry_is_refused(registry: RegistryServer, empty_store: ImageStore,
                                                  tmp_path: Path) -> None:
    entries = (("bin/", b""), ("../escaped", b"outside\n"))
    layout, _ = _hand_made_layout(tmp_path / "layout", entries)
    repo = _unique("unsafe")
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{registry.host}/{repo}:v1")
    with _client() as client, pytest.raises(LayerUnsafeError, match="escaped"):
        client.pull(empty_store, parse_reference(f"{registry.host}/{repo}:v1"), lambda _: None)
    assert empty_store.tags() == {} and empty_store.list() == []
    assert not list(tmp_path.rglob("escaped"))


HELLO = (("bin/", b""), ("bin/hello", b"hi from skopeo\n"))


def _hand_made_layout(layout: Path, entries: tuple[tuple[str, bytes], ...] = HELLO) -> tuple[Path, str]:
    """An OCI image layout with one gzip layer, written from scratch."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            is_dir = name.endswith("/")
            info.type, info.mode = (tarfile.DIRTYPE, 0o755) if is_dir else (tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = gzip.compress(raw.getvalue(), mtime=0)
    os_, arch = local_platform()
    config = json.dumps({"architecture": arch, "os": os_, "config": {"Cmd": ["/bin/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _write_blob(layout, config, "application/vnd.oci.image.config.v1+json"),
        "layers": [_write_blob(layout, layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }).encode()
    entry = _write_blob(layout, manifest, "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout, diff_id


def _write_blob(layout: Path, data: bytes, media_type: str) -> dict[str, object]:
    hex_ = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / hex_).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{hex_}", "size": len(data)}


# --- token auth ---


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, TokenServer]]:
    tmp = tmp_path_factory.mktemp("token-registry")
    tokens = start_token_server(tmp / "tokens", {USER: PASSWORD})
    try:
        server = start_registry(tmp / "registry", tokens.auth)
    except BaseException:
        tokens.stop()
        raise
    yield server, tokens
    server.stop()
    tokens.stop()


def test_token_auth_push_and_pull(token_registry: tuple[RegistryServer, TokenServer],
                                  source: tuple[ImageStore, Image], empty_store: ImageStore) -> None:
    server, tokens = token_registry
    store, image = source
    remote = parse_reference(f"{server.host}/{_unique('private')}:v1")
    with _client(credentials=(USER, PASSWORD)) as client:
        client.push(store, "app:v1", remote, lambda _: None)
    asked = len(tokens.requests)
    assert asked == 1  # one token for the push scope, reused by every request
    with _client(credentials=(USER, PASSWORD)) as client:
        assert client.pull(empty_store, remote, lambda _: None).id == image.id
    assert len(tokens.requests) == asked + 1
    assert "scope=repository%3A" in tokens.requests[-1] and "%3Apull" in tokens.requests[-1]


def test_token_auth_refusals(token_registry: tuple[RegistryServer, TokenServer],
                             source: tuple[ImageStore, Image], empty_store: ImageStore) -> None:
    server, _ = token_registry
    store, _ = source
    remote = parse_reference(f"{server.host}/{_unique('private')}:v1")
    refused = "authentication failed.*'alice'.*check the username and password"
    with _client(credentials=(USER, "wrong")) as client, pytest.raises(RegistryError, match=refused):
        client.push(store, "app:v1", remote, lambda _: None)
    with _client() as client, pytest.raises(RegistryError, match="requires authentication.*--username"):
        client.pull(empty_store, remote, lambda _: None)
    assert empty_store.tags() == {}


def test_basic_auth(tmp_path: Path, source: tuple[ImageStore, Image], empty_store: ImageStore) -> None:
    store, image = source
    server = start_registry(tmp_path / "basic", BasicAuth({USER: PASSWORD}))
    try:
        remote = parse_reference(f"{server.host}/basic/app:v1")
        with _client(credentials=(USER, PASSWORD)) as client:
            client.push(store, "app:v1", remote, lambda _: None)
            assert client.pull(empty_store, remote, lambda _: None).id == image.id
        with _client(credentials=(USER, "wrong")) as client, \
                pytest.raises(RegistryError, match="refused user 'alice'"):
            client.pull(empty_store, remote, lambda _: None)
        with _client() as client, pytest.raises(RegistryError, match="requires authentication"):
            client.pull(empty_store, remote, lambda _: None)
    finally:
        server.stop()


def test_cli_push_and_pull(token_registry: tuple[RegistryServer, TokenServer], tmp_path: Path) -> None:
    server, _ = token_registry
    home = tmp_path / "home"
    store = ImageStore(Settings(home=home).engine_root)
    build_busybox(store, lambda _: None)
    env = {**os.environ, "PAAS_HOME": str(home), "PAAS_REGISTRY": server.host,
           "PAAS_REGISTRY_INSECURE": "1", "PAAS_REGISTRY_USER": USER, "PAAS_REGISTRY_PASSWORD": PASSWORD}
    pushed = _paas(env, "engine", "push", "busybox:latest", "cli/busybox:v1")
    assert pushed.returncode == 0, pushed.stderr
    assert "v1: digest: sha256:" in pushed.stdout
    other = tmp_path / "other"
    env = {**env, "PAAS_HOME": str(other), "PAAS_REGISTRY_PASSWORD": ""}
    pulled = _paas(env, "engine", "pull", "--password-stdin", "cli/busybox:v1", stdin=f"{PASSWORD}\n")
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.split()[-1]
    assert ImageStore(Settings(home=other).engine_root).tags() == {
        f"{server.host}/cli/busybox:v1": image_id, "cli/busybox:v1": image_id}
    missing = _paas(env, "engine", "pull", "--password-stdin", "cli/busybox:nope", stdin=PASSWORD)
    assert missing.returncode == 1
    assert f"error: {server.host}/cli/busybox:nope: not found" in missing.stderr
    unconfigured = _paas({**env, "PAAS_REGISTRY": ""}, "engine", "pull", "busybox")
    assert "no registry configured" in unconfigured.stderr


def test_build_pulls_a_missing_base_from_the_configured_registry(
    registry: RegistryServer, source: tuple[ImageStore, Image], tmp_path: Path
) -> None:
    store, image = source
    repo = _unique("base/app")
    _push(registry, store, "app:v1", repo)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {repo}:v1\nCOPY extra.txt /extra.txt\n")
    (context / "extra.txt").write_text("extra\n")
    env = {**os.environ, "PAAS_HOME": str(tmp_path / "home"), "PAAS_SUBNET": random_subnet(),
           "PAAS_REGISTRY": registry.host, "PAAS_REGISTRY_INSECURE": "1"}
    built = _paas(env, "engine", "build", "-t", "derived:1", str(context))
    assert built.returncode == 0, built.stderr
    local = ImageStore(Settings(home=tmp_path / "home").engine_root)
    derived = local.get("derived:1")
    assert derived.diff_ids[: len(image.diff_ids)] == image.diff_ids
    assert local.get(f"{repo}:v1").id == image.id  # the base is kept under its short name too
    unconfigured = _paas({**env, "PAAS_HOME": str(tmp_path / "bare"), "PAAS_REGISTRY": ""},
                         "engine", "build", str(context))
    assert unconfigured.returncode == 1
    assert f"image not found: '{repo}:v1'" in unconfigured.stderr


def _paas(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(paas_argv(*args), env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_registryd_cleans_up(tmp_path: Path) -> None:
    server = start_registry(tmp_path / "r")
    pid = server.process.pid
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    shutil.rmtree(tmp_path / "r")
