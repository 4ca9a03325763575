"""The two local base images, built from the host when missing: ``busybox`` and ``debian:bookworm``.

busybox is one layer made from the host's static busybox. debian:bookworm is a
debootstrap minbase layer plus a layer with python3, installed by apt-get in a
chroot over an overlay mount. Every mount is made inside a private mount
namespace (``unshare --mount``), so none outlives the build, even on failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from paas.engine import layers
from paas.engine.images import Image, ImageConfig, ImageStore
from paas.errors import BuildError

Log = Callable[[str], None]

BUSYBOX_REF = "busybox:latest"
DEBIAN_REF = "debian:bookworm"
HOST_BUSYBOX = Path("/bin/busybox")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
BUSYBOX_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555,
                "root": 0o700, "sys": 0o555, "tmp": 0o1777, "var": 0o755}
PYTHON_STEP = "apt-get install -y --no-install-recommends python3"
# Runs inside the chroot; lists and caches go in the same step so the layer stays small.
APT_SCRIPT = (
    "apt-get update -q"
    f" && {PYTHON_STEP}"
    " && apt-get clean"
    " && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
)
# Runs in the private mount namespace; paths come in as $1..$5, never spliced into the text.
OVERLAY_SCRIPT = """set -eu
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
mount --bind /proc "$4/proc"
mount --bind /dev "$4/dev"
mount --bind "$5" "$4/etc/resolv.conf"
chroot "$4" /usr/bin/env -i "$6" DEBIAN_FRONTEND=noninteractive HOME=/root /bin/sh -euc "$7"
"""


def ensure_base_images(
    store: ImageStore,
    log: Log,
    *,
    mirror: str = DEBIAN_MIRROR,
    busybox: Path = HOST_BUSYBOX,
) -> None:
    """Build whichever base image is not in the store yet (one builder at a time)."""
    with _build_lock(store):
        if not store.has(BUSYBOX_REF):
            build_busybox(store, log, busybox=busybox)
        if not store.has(DEBIAN_REF):
            build_debian(store, log, mirror=mirror)


@contextlib.contextmanager
def _build_lock(store: ImageStore) -> Iterator[None]:
    fd = os.open(store.root / "baseimages.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_busybox(store: ImageStore, log: Log, *, busybox: Path = HOST_BUSYBOX) -> Image:
    """One layer: the host's static busybox, a symlink per applet, and a minimal /etc."""
    log(f"-----> Building {BUSYBOX_REF} from {busybox}")
    with tempfile.TemporaryDirectory(dir=store.scratch, prefix="busybox-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _busybox_tree(rootfs, busybox)
        layer = Path(tmp) / "layer.tar"
        layers.tar_directory(rootfs, layer, mtime=int(busybox.stat().st_mtime))
        config = ImageConfig(env=(PATH_ENV,), cmd=("sh",))
        image = store.commit(None, layer, config, f"busybox from the host's {busybox}")
    store.tag(image, BUSYBOX_REF)
    log(f"       {BUSYBOX_REF} is {image.short_id}")
    return image


def _busybox_tree(rootfs: Path, busybox: Path) -> None:
    rootfs.mkdir(mode=0o755)
    for name, mode in BUSYBOX_DIRS.items():
        (rootfs / name).mkdir()
        os.chmod(rootfs / name, mode)
    shutil.copyfile(busybox, rootfs / "bin" / "busybox")
    os.chmod(rootfs / "bin" / "busybox", 0o755)
    for applet in _applets(busybox):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)


def _applets(busybox: Path) -> list[str]:
    try:
        listing = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot list the applets of {busybox}: {e}") from None
    names = {n.strip() for n in listing.splitlines()}
    return sorted(n for n in names if n and "/" not in n and n not in (".", "..", "busybox"))


def build_debian(store: ImageStore, log: Log, *, mirror: str = DEBIAN_MIRROR) -> Image:
    """Layer 1: debootstrap minbase; layer 2: python3 from apt, with no lists or caches left."""
    log(f"-----> Building {DEBIAN_REF} from {mirror}")
    with tempfile.TemporaryDirectory(dir=store.scratch, prefix="debian-") as tmp:
        base = _debootstrap_layer(store, Path(tmp), log, mirror)
        image = _python_layer(store, base, Path(tmp), log)
    store.tag(image, DEBIAN_REF)
    log(f"       {DEBIAN_REF} is {image.short_id}")
    return image


def _debootstrap_layer(store: ImageStore, tmp: Path, log: Log, mirror: str) -> Image:
    rootfs = tmp / "rootfs"
    argv = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror]
    log(f"-----> {' '.join(argv[:3])}")
    _run(["unshare", "--mount", "--propagation", "private", *argv], log)
    _clean_rootfs(rootfs)
    layer = tmp / "layer1.tar"
    layers.tar_directory(rootfs, layer)
    shutil.rmtree(rootfs)
    config = ImageConfig(env=(PATH_ENV,), cmd=("bash",))
    return store.commit(None, layer, config, f"debootstrap --variant=minbase {DEBIAN_SUITE}")


def _clean_rootfs(rootfs: Path) -> None:
    """Drop what must not be in an image: device nodes, host identity, apt caches."""
    for directory in ("dev", "proc", "sys", "var/lib/apt/lists", "var/cache/apt/archives"):
        _empty_dir(rootfs / directory)
    for leftover in (rootfs / "var/cache/apt").glob("*.bin"):
        leftover.unlink()
    (rootfs / "var/lib/apt/lists/partial").mkdir(mode=0o700, parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(mode=0o700, parents=True, exist_ok=True)
    # Empty, so the runtime (and our apt step) has a file to bind-mount over.
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "etc/hostname").write_text("localhost\n")


def _empty_dir(directory: Path) -> None:
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _python_layer(store: ImageStore, base: Image, tmp: Path, log: Log) -> Image:
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    lowerdirs = [str(p) for p in store.lowerdirs(base)]
    if any(c in p for p in lowerdirs for c in ",:"):
        raise BuildError(f"image store path {store.root} cannot hold ',' or ':' (overlayfs)")
    log(f"-----> {PYTHON_STEP}")
    args = [":".join(lowerdirs), str(upper), str(work), str(merged), str(HOST_RESOLV_CONF)]
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", OVERLAY_SCRIPT,
          "sh", *args, PATH_ENV, APT_SCRIPT], log)
    layer = tmp / "layer2.tar"
    layers.tar_overlay_upper(upper, layer)
    return store.commit(base, layer, base.config, PYTHON_STEP)


def _run(argv: Sequence[str], log: Log) -> None:
    """Run a command, streaming its output lines to log; BuildError if it fails."""
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace",
        )
    except OSError as e:
        raise BuildError(f"cannot run {argv[0]}: {e}") from None
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            log("       " + line.rstrip("\n"))
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv[:4])} ... failed with exit status {proc.returncode}")
