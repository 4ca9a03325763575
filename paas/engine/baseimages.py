"""The local base images, built from the host when missing: ``busybox``, ``debian:bookworm``
and the buildpack stack ``stack:bookworm``.

busybox is one layer made from the host's static busybox. debian:bookworm is a debootstrap
minbase layer plus a layer with python3. The stack adds, on top of debian:bookworm, one layer
per concern that apps share: python3-venv (with pip's wheel) and ca-certificates; nodejs and
npm; the non-root user ``paas`` (uid/gid 1000, HOME=/app). Each layer is one step run by
apt-get or a shell in a chroot over an overlay mount; apt's lists and caches live in a host
directory bound over them for the build, so no layer holds them. Every mount is made inside a
private mount namespace (``unshare --mount``), so none outlives the build, even on failure.
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
# Runs in the private mount namespace; paths come in as $1..$8, never spliced into the text.
# $8, when not empty, is a host dir holding apt's lists/ and cache/, bound over the chroot's.
OVERLAY_SCRIPT = """set -eu
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
mount --bind /proc "$4/proc"
mount --bind /dev "$4/dev"
mount --bind "$5" "$4/etc/resolv.conf"
if [ -n "$8" ]; then
  mount --bind "$8/lists" "$4/var/lib/apt/lists"
  mount --bind "$8/cache" "$4/var/cache/apt"
fi
chroot "$4" /usr/bin/env -i "$6" DEBIAN_FRONTEND=noninteractive HOME=/root /bin/sh -euc "$7"
"""

STACK_REF = "stack:bookworm"
STACK_NAME = "debian-bookworm"
STACK_USER = "paas"
STACK_UID = 1000
STACK_HOME = "/app"
STACK_ENV = (PATH_ENV, "LANG=C.UTF-8", f"STACK={STACK_NAME}")
# dpkg's fsync per file is for a live system's crash safety; a failed layer is thrown away.
_APT_INSTALL = "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io"
# apt's and dpkg's logs would make every build of a layer differ, for nothing.
_DROP_LOGS = " && rm -rf /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old"
# (history entry, script run in the chroot): one layer each. The first one fetches the lists
# into the bound apt dir; the later ones reuse them.
STACK_STEPS: tuple[tuple[str, str], ...] = (
    ("python3-venv python3-pip-whl ca-certificates",
     f"apt-get update -q -o Acquire::Languages=none && {_APT_INSTALL} python3-venv"
     f" python3-pip-whl python3-setuptools-whl ca-certificates{_DROP_LOGS}"),
    ("nodejs npm", f"{_APT_INSTALL} nodejs npm{_DROP_LOGS}"),
    (f"user {STACK_USER} ({STACK_UID}:{STACK_UID}, HOME={STACK_HOME})",
     f"groupadd --gid {STACK_UID} {STACK_USER}"
     f" && useradd --no-log-init --uid {STACK_UID} --gid {STACK_UID} --home-dir {STACK_HOME}"
     f" --no-create-home --shell /bin/bash {STACK_USER}"
     f" && install -d -o {STACK_UID} -g {STACK_UID} -m 0755 {STACK_HOME}"
     " && rm -f /etc/passwd- /etc/group- /etc/shadow- /etc/gshadow-"),
)


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
        if not store.has(STACK_REF):
            build_stack(store, log)


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
    return _chroot_layer(store, base, tmp / "python", log, PYTHON_STEP, APT_SCRIPT)


def build_stack(store: ImageStore, log: Log) -> Image:
    """The buildpack stack: debian:bookworm plus one layer per STACK_STEPS entry."""
    log(f"-----> Building {STACK_REF} on {DEBIAN_REF}")
    image = store.get(DEBIAN_REF)
    with tempfile.TemporaryDirectory(dir=store.scratch, prefix="stack-") as tmp:
        apt = Path(tmp) / "apt"
        for sub in ("lists/partial", "cache/archives/partial"):
            (apt / sub).mkdir(parents=True)
        for number, (entry, script) in enumerate(STACK_STEPS, start=1):
            step_dir = Path(tmp) / f"step{number}"
            image = _chroot_layer(store, image, step_dir, log, entry, script, apt=apt)
    config = image.config.replace(
        env=STACK_ENV, cmd=("bash",), user=f"{STACK_UID}:{STACK_UID}", working_dir=STACK_HOME,
        labels={"paas.stack": STACK_NAME},
    )
    image = store.commit(image, None, config, f"stack {STACK_NAME}: env, user, workdir")
    store.tag(image, STACK_REF)
    log(f"       {STACK_REF} is {image.short_id}")
    return image


def _chroot_layer(store: ImageStore, base: Image, tmp: Path, log: Log, entry: str, script: str,
                  *, apt: Path | None = None) -> Image:
    """A layer on `base`: what `script`, run as root in a chroot of it, changed."""
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    lowerdirs = [str(p) for p in store.lowerdirs(base)]
    if any(c in p for p in lowerdirs for c in ",:"):
        raise BuildError(f"image store path {store.root} cannot hold ',' or ':' (overlayfs)")
    log(f"-----> {entry}")
    args = [":".join(lowerdirs), str(upper), str(work), str(merged), str(HOST_RESOLV_CONF)]
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", OVERLAY_SCRIPT,
          "sh", *args, PATH_ENV, script, str(apt or "")], log)
    layer = tmp / "layer.tar"
    layers.tar_overlay_upper(upper, layer)
    shutil.rmtree(upper)
    image = store.commit(base, layer, base.config, entry)
    layer.unlink()
    return image


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
