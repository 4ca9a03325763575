"""The container's root filesystem: the overlay, /proc /dev /sys, binds, pivot_root.

Runs in the container's init, inside its own mount namespace, so none of these mounts is
ever visible on the host and all of them vanish with the container. Every mount target is
a real directory or file of the init layer (see initlayer.py), never an image symlink.
"""

from __future__ import annotations

import os

from paas.engine.runtime import _libc
from paas.engine.runtime.launchspec import Bind, LaunchSpec

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
NOSUID_NODEV_NOEXEC = _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC


def setup_rootfs(spec: LaunchSpec) -> None:
    """Mount everything the container sees under spec.rootfs (not yet its root)."""
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    lower = ":".join(spec.lowerdirs)
    options = f"lowerdir={lower},upperdir={spec.upperdir},workdir={spec.overlay_workdir}"
    _libc.mount("overlay", spec.rootfs, "overlay", 0, options)
    root = spec.rootfs
    _libc.mount("proc", f"{root}/proc", "proc", NOSUID_NODEV_NOEXEC)
    _mount_dev(f"{root}/dev")
    _libc.mount("sysfs", f"{root}/sys", "sysfs", NOSUID_NODEV_NOEXEC | _libc.MS_RDONLY)
    for bind in spec.binds:
        _bind(bind, root + bind.dst)


def _mount_dev(dev: str) -> None:
    _libc.mount("tmpfs", dev, "tmpfs", _libc.MS_NOSUID | _libc.MS_STRICTATIME, "mode=755")
    for name in HOST_DEVICES:
        target = f"{dev}/{name}"
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o666))
        _libc.mount(f"/dev/{name}", target, None, _libc.MS_BIND)
    os.mkdir(f"{dev}/pts")
    _libc.mount(
        "devpts", f"{dev}/pts", "devpts", _libc.MS_NOSUID | _libc.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.mkdir(f"{dev}/shm", 0o1777)
    _libc.mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777")
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")


def _bind(bind: Bind, target: str) -> None:
    _libc.mount(bind.src, target, None, _libc.MS_BIND | _libc.MS_REC)
    if bind.readonly:
        flags = _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY
        _libc.mount(None, target, None, flags)


def pivot(root: str) -> None:
    """Make `root` the root, and detach the host's tree from this namespace for good."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; unmounting "."
    # then drops the old root without needing a put_old directory in the image.
    _libc.pivot_root(".", ".")
    _libc.umount2(".", _libc.MNT_DETACH)
    os.chdir("/")
