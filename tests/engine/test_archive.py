"""save/load against the real podman and skopeo, and a corpus of bad archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paas.engine import archive, layers
from paas.engine.images import Image, ImageConfig, ImageStore
from paas.errors import ImageInvalidError


@pytest.fixture
def store(busybox_images: ImageStore) -> ImageStore:
    return busybox_images


@pytest.fixture
def app_image(store: ImageStore, tmp_path: Path) -> Image:
    """busybox plus a layer with a file, a deletion (whiteout) and an opaque dir."""
    upper = tmp_path / "upper"
    (upper / "srv" / "app").mkdir(parents=True)
    (upper / "srv" / "app" / "main.sh").write_text("echo hi\n")
    os.mknod(upper / "srv" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(upper / "srv" / "app", layers.OPAQUE_XATTR, b"y")
    layers.tar_overlay_upper(upper, tmp_path / "app.tar")
    config = ImageConfig(env=("PATH=/bin", "MODE=test"), cmd=("sh", "/srv/app/main.sh"),
                         working_dir="/srv/app", exposed_ports=("8080/tcp",), labels={"a": "b"})
    return store.commit(store.get("busybox"), tmp_path / "app.tar", config, "COPY app /srv/app")


@pytest.fixture
def podman_names() -> Iterator[list[str]]:
    """Names (and ids) this test put in podman's storage; all removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def unique_ref() -> str:
    return f"localhost/paas-test-{uuid.uuid4().hex[:10]}:v1"


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def test_podman_loads_what_we_save(store: ImageStore, app_image: Image, tmp_path: Path,
                                   podman_names: list[str]) -> None:
    ref = store.tag(app_image, unique_ref())
    archive.save(store, [ref], tmp_path / "out.tar")
    podman_names.append(ref)
    assert ref in run("podman", "load", "-i", str(tmp_path / "out.tar"))
    [doc] = json.loads(run("podman", "image", "inspect", ref))
    assert "sha256:" + doc["Id"] == app_image.id  # the same config, byte for byte
    assert doc["RootFS"]["Layers"] == list(app_image.diff_ids)
    assert doc["Config"]["Cmd"] == ["sh", "/srv/app/main.sh"]
    assert doc["Config"]["Env"] == ["PATH=/bin", "MODE=test"]
    assert doc["Config"]["WorkingDir"] == "/srv/app"


def test_skopeo_reads_both_forms_of_our_archive(store: ImageStore, app_image: Image,
                                                tmp_path: Path) -> None:
    ref = store.tag(app_image, unique_ref())
    out = tmp_path / "out.tar"
    archive.save(store, [ref], out)
    for transport in ("docker-archive", "oci-archive"):
        doc = json.loads(run("skopeo", "inspect", f"{transport}:{out}"))
        assert doc["Layers"] == list(app_image.diff_ids), transport
        config = json.loads(run("skopeo", "inspect", "--config", f"{transport}:{out}"))
        assert config["config"]["Cmd"] == ["sh", "/srv/app/main.sh"]
    members = read_members(out)
    assert {"oci-layout", "index.json", "manifest.json"} <= set(members)
    index = json.loads(members["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert entry["annotations"]["io.containerd.image.name"] == ref


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_we_load_what_podman_saves(store: ImageStore, app_image: Image, tmp_path: Path,
                                   podman_names: list[str], fmt: str) -> None:
    ref = store.tag(app_image, unique_ref())
    archive.save(store, [ref], tmp_path / "ours.tar")
    podman_names.append(ref)
    run("podman", "load", "-i", str(tmp_path / "ours.tar"))
    run("podman", "save", "--format", fmt, "-o", str(tmp_path / "theirs.tar"), ref)
    fresh = ImageStore(tmp_path / "fresh")
    assert archive.load(fresh, tmp_path / "theirs.tar") == [ref]
    loaded = fresh.get(ref)
    assert loaded.id == app_image.id  # podman kept the config; oci-archive gzips the layers
    assert loaded.diff_ids == app_image.diff_ids and loaded.config == app_image.config
    assert fresh.lowerdirs(loaded)[0].joinpath("srv/app/main.sh").read_text() == "echo hi\n"


def test_our_round_trip_of_several_images(store: ImageStore, app_image: Image, tmp_path: Path) -> None:
    store.tag(app_image, "app:1")
    store.tag(app_image, "app:latest")
    busybox = store.get("busybox")
    archive.save(store, ["app:1", "app", busybox.id], tmp_path / "out.tar")
    fresh = ImageStore(tmp_path / "fresh")
    loaded = archive.load(fresh, tmp_path / "out.tar")
    assert loaded == ["app:1", "app:latest", busybox.id]
    assert fresh.tags() == {"app:1": app_image.id, "app:latest": app_image.id}
    assert {i.id for i in fresh.list()} == {app_image.id, busybox.id}


# --- bad archives ---------------------------------------------------------------------------

Members = dict[str, bytes]


def read_members(path: Path) -> Members:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def write_archive(path: Path, members: Members, extra: list[tarfile.TarInfo] = ()) -> Path:  # type: ignore[assignment]
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(members: Members) -> list[dict]:
    return json.loads(members["manifest.json"])


def set_manifest(members: Members, doc: list[dict]) -> None:
    members["manifest.json"] = json.dumps(doc).encode()


def only_docker(members: Members) -> None:
    for name in ("index.json", "oci-layout"):
        members.pop(name)


def replace_config(members: Members, change: Callable[[dict], None]) -> None:
    doc = manifest(members)
    config = json.loads(members.pop(doc[0]["Config"]))
    change(config)
    data = json.dumps(config).encode()
    doc[0]["Config"] = f"blobs/sha256/{sha(data)}"
    members[doc[0]["Config"]] = data
    set_manifest(members, doc)


def top_layer(members: Members) -> str:
    return manifest(members)[0]["Layers"][-1]


def bomb_layer(members: Members) -> None:
    """The top layer replaced by 100 MB of zeros, gzipped to ~100 kB, under its own digest."""
    zeros = io.BytesIO()
    with gzip.GzipFile(fileobj=zeros, mode="wb", compresslevel=1) as gz:
        block = bytes(1 << 20)
        for _ in range(100):
            gz.write(block)
    data = zeros.getvalue()
    doc = manifest(members)
    members.pop(doc[0]["Layers"][-1])
    doc[0]["Layers"][-1] = f"blobs/sha256/{sha(data)}"
    members[doc[0]["Layers"][-1]] = data
    set_manifest(members, doc)


def link(name: str, kind: bytes, target: str = "x") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def unsafe_layer_second_image(members: Members, store: ImageStore, tmp_path: Path) -> None:
    """A second image whose layer is well-formed data but escapes with '../' when unpacked."""
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data = (tmp_path / "evil.tar").read_bytes()
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(data)}"]}}
    config_bytes = json.dumps(config).encode()
    members[f"blobs/sha256/{sha(data)}"] = data
    members[f"blobs/sha256/{sha(config_bytes)}"] = config_bytes
    doc = manifest(members)
    doc.append({"Config": f"blobs/sha256/{sha(config_bytes)}", "RepoTags": ["evil:1"],
                "Layers": [f"blobs/sha256/{sha(data)}"]})
    set_manifest(members, doc)


CASES: dict[str, tuple[Callable[..., object], str]] = {
    "manifest.json is not JSON": (lambda m: m.update({"manifest.json": b"[{"}), "not JSON"),
    "manifest.json entry without Layers": (
        lambda m: set_manifest(m, [{"Config": manifest(m)[0]["Config"]}]), "malformed"),
    "index.json malformed": (
        lambda m: (m.pop("manifest.json"), m.update({"index.json": b'{"manifests": 3}'})),
        "no manifests list"),
    "a blob that does not match its digest": (
        lambda m: m.update({top_layer(m): m[top_layer(m)][:-1024] + b"x" * 1024}), "expected"),
    "a missing layer": (lambda m: m.pop(top_layer(m)), "missing"),
    "a missing OCI manifest blob": (
        lambda m: (m.pop("manifest.json"),
                   m.pop("blobs/sha256/" + json.loads(m["index.json"])["manifests"][0]["digest"][7:])),
        "missing"),
    "a config whose diff_ids do not match the layers": (
        lambda m: replace_config(m, lambda c: c["rootfs"]["diff_ids"].__setitem__(-1, "sha256:" + "0" * 64)),
        "expected sha256:0000"),
    "a config with fewer diff_ids than layers": (
        lambda m: replace_config(m, lambda c: c["rootfs"]["diff_ids"].pop()), "diff_ids for"),
    "a config that is not a config": (
        lambda m: replace_config(m, lambda c: c.pop("rootfs")), "no rootfs"),
    "a gzip bomb layer": (bomb_layer, "bomb"),
    "a bad RepoTag": (lambda m: set_manifest(m, [{**manifest(m)[0], "RepoTags": ["Bad Name"]}]),
                      "invalid image name"),
}
EXTRA: dict[str, tuple[tarfile.TarInfo, str]] = {
    "a member named with ..": (link("../evil", tarfile.REGTYPE), "clean relative"),
    "an absolute member": (link("/etc/evil", tarfile.REGTYPE), "absolute"),
    "a device node": (link("dev", tarfile.CHRTYPE), "not a regular file"),
    "a duplicate member": (link("manifest.json", tarfile.REGTYPE), "duplicate"),
}


@pytest.fixture
def good_members(store: ImageStore, app_image: Image, tmp_path: Path) -> Members:
    store.tag(app_image, "app:1")
    archive.save(store, ["app:1"], tmp_path / "good.tar")
    return read_members(tmp_path / "good.tar")


def assert_refused(tmp_path: Path, members: Members, match: str,
                   extra: list[tarfile.TarInfo] = ()) -> None:  # type: ignore[assignment]
    fresh = ImageStore(tmp_path / "fresh")
    bad = write_archive(tmp_path / "bad.tar", members, extra)
    with pytest.raises(ImageInvalidError, match=match):
        archive.load(fresh, bad)
    assert fresh.tags() == {} and fresh.list() == []
    assert fresh.content.digests() == []  # what it wrote before the error is gone again


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_archives_are_refused_whole(case: str, good_members: Members, tmp_path: Path) -> None:
    spoil, match = CASES[case]
    if case not in ("index.json malformed", "a missing OCI manifest blob"):
        only_docker(good_members)  # else the docker manifest.json would be read
    spoil(good_members)
    assert_refused(tmp_path, good_members, match)


@pytest.mark.parametrize("case", sorted(EXTRA))
def test_bad_members_are_refused(case: str, good_members: Members, tmp_path: Path) -> None:
    info, match = EXTRA[case]
    assert_refused(tmp_path, good_members, match, [info])


def test_a_layer_named_through_a_link_is_refused(good_members: Members, tmp_path: Path) -> None:
    only_docker(good_members)
    name = top_layer(good_members)
    good_members.pop(name)
    assert_refused(tmp_path, good_members, "is a link", [link(name, tarfile.SYMTYPE, "/etc/passwd")])


def test_an_unsafe_second_image_leaves_the_first_unloaded(
    good_members: Members, store: ImageStore, tmp_path: Path
) -> None:
    only_docker(good_members)
    unsafe_layer_second_image(good_members, store, tmp_path)
    assert_refused(tmp_path, good_members, r"'\.\.' component")
