"""The container's root filesystem: the overlay, /proc /dev /sys, binds, pivot_root.

Runs in the container's mount namespace (the overlay from the launcher, the rest from the
init: see mount_root), so none of these mounts is ever visible on the host and all of them
vanish with the container. Every mount target is
a real directory or file of the init layer (see initlayer.py), and is opened without following
symlinks anyway (safepath.py), so an upper dir changed at run time cannot redirect a mount.
The /proc and /sys masks are Docker's (moby's oci defaults): masked paths read as empty.
"""

from __future__ import annotations

import os
import stat

from paas.engine.runtime import _libc, initlayer
from paas.engine.runtime.launchspec import LaunchSpec
from paas.engine.runtime.safepath import mount_target

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
NOSUID_NODEV_NOEXEC = _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SHM_OPTIONS = "mode=1777,size=65536k"
SCRATCH_OPTIONS = "mode=755,size=1m"


def mount_root(spec: LaunchSpec) -> None:
    """The overlay at spec.rootfs (not yet our root), on a new init layer. The launcher does
    this, in the init's mount namespace, while the init starts (see mount_kernel_trees)."""
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    # The init layer (lowerdirs[0]) and the overlay's mount point (spec.rootfs) live in a
    # tmpfs of our mount namespace, on their common parent dir: no disk work for either, and
    # the host only ever sees that dir, empty.
    scratch = os.path.dirname(spec.lowerdirs[0])
    _libc.mount("tmpfs", scratch, "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, SCRATCH_OPTIONS)
    initlayer.populate(spec.lowerdirs[0], spec.etc_files, spec.binds)
    os.mkdir(spec.rootfs, 0o755)
    lower = ":".join(spec.lowerdirs)
    options = f"lowerdir={lower},upperdir={spec.upperdir},workdir={spec.overlay_workdir}"
    _libc.mount("overlay", spec.rootfs, "overlay", 0, options)


def mount_kernel_trees(spec: LaunchSpec) -> None:
    """/proc, /dev, /sys with their masks, then the binds, on the mounted root. By the init:
    proc shows the pids of its mounter's pid namespace, and the launcher is not in ours."""
    root = spec.rootfs
    with mount_target(root, "proc") as target:
        _libc.mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)
    with mount_target(root, "dev") as target:
        _libc.mount("tmpfs", target, "tmpfs", _libc.MS_NOSUID | _libc.MS_STRICTATIME, "mode=755")
    _populate_dev(f"{root}/dev")  # by name: the fd above still points under the new tmpfs
    with mount_target(root, "sys") as target:
        _libc.mount("sysfs", target, "sysfs", NOSUID_NODEV_NOEXEC | _libc.MS_RDONLY)
    _mask(root)
    for bind in spec.binds:
        with mount_target(root, bind.dst) as target:
            _libc.mount(bind.src, target, None, _libc.MS_BIND | _libc.MS_REC)
        if bind.readonly:  # by name: only that reaches the new mount, not what it covers
            flags = _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY
            _libc.mount(None, root + bind.dst, None, flags)


def _mask(root: str) -> None:
    """Hide what would tell about or act on the host; the kernel's own trees, so no symlinks."""
    for path in MASKED_PATHS:
        try:
            is_dir = stat.S_ISDIR(os.lstat(root + path).st_mode)
        except FileNotFoundError:
            continue
        if is_dir:
            _libc.mount("tmpfs", root + path, "tmpfs", _libc.MS_RDONLY, "size=0")
        else:
            _libc.mount("/dev/null", root + path, None, _libc.MS_BIND)
    for path in READONLY_PATHS:
        target = root + path
        try:
            _libc.mount(target, target, None, _libc.MS_BIND | _libc.MS_REC)
        except FileNotFoundError:  # a kernel built without it (no CONFIG_MAGIC_SYSRQ, ...)
            continue
        flags = _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | NOSUID_NODEV_NOEXEC
        _libc.mount(None, target, None, flags)


def _populate_dev(dev: str) -> None:
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
    _libc.mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, SHM_OPTIONS)
    os.mkdir(f"{dev}/mqueue")
    _libc.mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")


def pivot(root: str) -> None:
    """Make `root` the root, and detach the host's tree from this namespace for good."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; unmounting "."
    # then drops the old root without needing a put_old directory in the image.
    _libc.pivot_root(".", ".")
    _libc.umount2(".", _libc.MNT_DETACH)
    os.chdir("/")
