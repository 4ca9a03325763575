"""The base images, built for real from the host's busybox and the Debian mirror."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from testkit import scratch_engine

from paas.engine import baseimages
from paas.engine.containers import ContainerSpec
from paas.engine.images import ImageStore


def in_rootfs(lowerdirs: list[Path], work: Path, *argv: str) -> str:
    """Run argv chrooted in an overlay of lowerdirs, in a private mount namespace."""
    for name in ("upper", "work", "merged"):
        (work / name).mkdir(parents=True, exist_ok=True)
    script = (
        'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"'
        ' && shift 2 && chroot "$0" "$@"'
    )
    lower = ":".join(map(str, lowerdirs))
    merged = str(work / "merged")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, merged,
         lower, str(work), *argv],
        capture_output=True, text=True, check=True,
    )
    assert not os.path.ismount(merged)
    return result.stdout


@pytest.fixture(scope="module")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, list[str]]:
    store = ImageStore(tmp_path_factory.mktemp("busybox") / "images")
    log: list[str] = []
    baseimages.build_busybox(store, log.append)
    return store, log


def test_busybox_image(busybox_store: tuple[ImageStore, list[str]]) -> None:
    store, log = busybox_store
    image = store.get("busybox")
    assert image.config.cmd == ("sh",)
    assert len(image.diff_ids) == 1
    fs = store.lowerdirs(image)[0]
    assert os.readlink(fs / "bin" / "sh") == "busybox"
    assert (fs / "bin" / "busybox").stat().st_mode & 0o111
    assert stat.S_IMODE(os.lstat(fs / "tmp").st_mode) == 0o1777
    assert "root:x:0:0:" in (fs / "etc" / "passwd").read_text()
    assert "nobody:x:65534:" in (fs / "etc" / "group").read_text()
    for name in ("proc", "sys", "dev", "etc"):
        assert (fs / name).is_dir()
    applets = set(os.listdir(fs / "bin"))
    assert {"ls", "cat", "wget", "sh"} <= applets
    assert any("busybox" in line for line in log)


def test_busybox_runs(busybox_store: tuple[ImageStore, list[str]], tmp_path: Path) -> None:
    store, _ = busybox_store
    fs = store.lowerdirs(store.get("busybox"))[0]
    out = subprocess.run(["chroot", str(fs), "/bin/sh", "-c", "echo hi; id -u; ls /"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["hi", "0"] and "tmp" in out


def test_busybox_layer_is_reproducible(tmp_path: Path,
                                       busybox_store: tuple[ImageStore, list[str]]) -> None:
    store, _ = busybox_store
    other = ImageStore(tmp_path / "other")
    baseimages.build_busybox(other, lambda line: None)
    assert other.get("busybox").diff_ids == store.get("busybox").diff_ids


# --- debian:bookworm and the stack (built by ensure_base_images into the session's
# `stack_engine`, kept across runs; a fresh build takes about two and a half minutes) -----------


@pytest.fixture(scope="session")
def base_store(stack_engine: Path) -> ImageStore:
    """The three base images, built by ensure_base_images: read them, never change them."""
    return ImageStore(stack_engine)


def test_ensure_base_images_builds_each_once(base_store: ImageStore) -> None:
    refs = ("busybox", "debian:bookworm", baseimages.STACK_REF)
    ids = {ref: base_store.get(ref).id for ref in refs}
    log: list[str] = []
    baseimages.ensure_base_images(base_store, log.append)
    assert log == []
    assert {ref: base_store.get(ref).id for ref in refs} == ids


def test_debian_layers(base_store: ImageStore) -> None:
    image = base_store.get("debian:bookworm")
    assert image.config.cmd == ("bash",)
    assert image.config.env == (baseimages.PATH_ENV,)
    assert len(image.diff_ids) == 2
    top, bottom = base_store.lowerdirs(image)
    assert (bottom / "usr" / "bin" / "apt-get").is_file()
    assert os.listdir(bottom / "dev") == []
    assert list((top / "usr" / "bin").glob("python3*"))
    assert os.listdir(top / "var" / "lib" / "apt" / "lists") in ([], ["partial"])
    assert not list((top / "var" / "cache" / "apt" / "archives").glob("*.deb"))


def test_debian_runs_python(base_store: ImageStore, tmp_path: Path) -> None:
    lower = base_store.lowerdirs(base_store.get("debian:bookworm"))
    out = in_rootfs(lower, tmp_path, "/usr/bin/python3", "-c", "import sys; print(sys.version)")
    assert out.startswith("3.11")
    out = in_rootfs(lower, tmp_path, "/bin/sh", "-c", "cat /etc/os-release; id -u")
    assert "bookworm" in out and out.split()[-1] == "0"


def test_stack_is_debian_plus_one_layer_per_concern(base_store: ImageStore) -> None:
    debian, stack = base_store.get("debian:bookworm"), base_store.get(baseimages.STACK_REF)
    assert stack.diff_ids[:2] == debian.diff_ids, "the stack shares debian:bookworm's layers"
    steps = [h.created_by for h in stack.history if not h.empty_layer]
    assert steps[2:] == [entry for entry, _ in baseimages.STACK_STEPS]
    assert len(stack.diff_ids) == 2 + len(baseimages.STACK_STEPS)
    sizes = {step: base_store.content.size(d) for step, d in zip(steps, stack.layers, strict=True)}
    print("layer sizes:", {step: f"{size / 1e6:.1f} MB" for step, size in sizes.items()})
    config = stack.config
    assert config.env == (baseimages.PATH_ENV, "LANG=C.UTF-8", "STACK=debian-bookworm")
    assert (config.user, config.working_dir) == ("1000:1000", "/app")
    assert config.labels == {"paas.stack": "debian-bookworm"}


def test_stack_layers_hold_no_apt_lists_caches_or_logs(base_store: ImageStore) -> None:
    stack = base_store.get(baseimages.STACK_REF)
    for layer in base_store.lowerdirs(stack)[: len(baseimages.STACK_STEPS)]:
        lists = layer / "var/lib/apt/lists"
        assert not lists.exists() or os.listdir(lists) in ([], ["partial"]), layer
        assert not list(layer.glob("var/cache/apt/**/*.deb")) and not list(
            layer.glob("var/cache/apt/*.bin")), layer
        assert not (layer / "var/log/dpkg.log").is_file()  # a whiteout at most


def test_stack_user_layer(base_store: ImageStore) -> None:
    top = base_store.lowerdirs(base_store.get(baseimages.STACK_REF))[0]
    passwd = (top / "etc/passwd").read_text().splitlines()
    assert "paas:x:1000:1000::/app:/bin/bash" in passwd
    assert "paas:x:1000:" in (top / "etc/group").read_text()
    st = os.stat(top / "app")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o755)


STACK_PROBE = """set -e
id -u; id -g; echo "$HOME $LANG $STACK"; pwd
python3 -c 'import sys, ssl; print(sys.version.split()[0]); ssl.create_default_context()'
python3 -m venv --without-pip /tmp/venv
wheel=$(echo /usr/share/python-wheels/pip-*.whl)
/tmp/venv/bin/python "$wheel/pip" --version | cut -d' ' -f1
node --version; npm --version
test -s /etc/ssl/certs/ca-certificates.crt && echo certs
"""


def test_stack_runs_python_venv_node_and_npm_as_paas(base_store: ImageStore, tmp_path: Path) -> None:
    stack = base_store.get(baseimages.STACK_REF)
    with scratch_engine(tmp_path / "engine", with_busybox=False) as engine:
        spec = ContainerSpec(
            name="stack-probe", lowerdirs=tuple(map(str, base_store.lowerdirs(stack))),
            argv=("/bin/sh", "-c", STACK_PROBE), env=stack.config.env, network="none",
            user=stack.config.user, workdir=stack.config.working_dir,
        )
        lines: list[str] = []
        result = engine.runtime.run(spec, on_output=lines.append)
        engine.runtime.remove(result.container_id)
    assert result.exit_code == 0, lines
    uid, gid, env, cwd, python, pip, node, npm, certs = lines
    assert (uid, gid, env, cwd) == ("1000", "1000", "/app C.UTF-8 debian-bookworm", "/app")
    assert python.startswith("3.11.") and pip == "pip"
    assert node.startswith("v18.") and npm.startswith("9.") and certs == "certs"
