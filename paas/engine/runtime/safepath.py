"""Paths inside a container's root, walked so that image content cannot point them outside.

An image (or a container's own upper dir, on restart) may hold symlinks where we mount or
chdir: /dev -> /, a bind target under a link, WORKDIR /proc/self/fd/N (the runc CVE-2024-21626
shape, where a leaked fd of the init is a host directory). Mount targets are opened without
following any symlink and mounted through /proc/self/fd/N; the workdir is resolved with the
container's root as the root and magic links refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from paas.engine.runtime import _libc
from paas.errors import ContainerError

_WORKDIR_RESOLVE = _libc.RESOLVE_IN_ROOT | _libc.RESOLVE_NO_MAGICLINKS


@contextlib.contextmanager
def mount_target(root: str, path: str) -> Iterator[str]:
    """A path naming `root`/`path` for mount(2), refusing a symlink anywhere along `path`."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in [part for part in path.split("/") if part not in ("", ".")]:
            if name == "..":
                raise ContainerError(f"mount target {path!r} leaves the container's root")
            child = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise ContainerError(f"mount target {path!r} is or passes through a symlink")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def open_workdir(path: str) -> int:
    """An O_PATH fd of the working dir (created if missing), resolved inside our root.

    Call after pivot_root. Symlinks resolve as if "/" were the container's root; magic links
    (/proc/self/fd/N, /proc/1/cwd, ...) are refused, and so is any dir of /proc itself.
    """
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _open_or_create(root, os.path.normpath("/" + path.lstrip("/")))
    except OSError as exc:
        raise ContainerError(f"working directory {path!r}: {exc.strerror}") from None
    finally:
        os.close(root)
    if os.fstat(fd).st_dev == os.stat("/proc").st_dev:  # /proc/1/fd and the like: no place to be
        os.close(fd)
        raise ContainerError(f"working directory {path!r} is inside /proc")
    return fd


def open_file(path: str) -> int:
    """A read-only fd of a file of our root (after pivot_root), resolved like open_workdir.

    The image decides what its files are: /etc/passwd may be a symlink to /proc/1/fd/N/...,
    which would lead into a directory the init holds open on the host.
    """
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _libc.openat2(root, path.lstrip("/"), os.O_RDONLY, _WORKDIR_RESOLVE)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:  # Linux < 5.6
            real = os.path.realpath(path)
            if real == "/proc" or real.startswith("/proc/"):
                raise ContainerError(f"{path} leads outside the container") from None
            return os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise ContainerError(f"{path} leads outside the container") from None
        raise
    finally:
        os.close(root)


def _open_or_create(root: int, path: str) -> int:
    try:
        return _open_dir(root, path)
    except FileNotFoundError:
        pass
    parent, _, name = path.rpartition("/")
    parent_fd = _open_or_create(root, parent or "/")
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)
    return _open_dir(root, path)


def _open_dir(root: int, path: str) -> int:
    try:
        return _libc.openat2(root, path, os.O_PATH | os.O_DIRECTORY, _WORKDIR_RESOLVE)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:  # Linux < 5.6
            return _open_dir_without_openat2(path)
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise ContainerError(f"working directory {path!r} leads outside the container") from None
        if exc.errno == errno.ENOTDIR:
            raise ContainerError(f"working directory {path!r} is not a directory") from None
        raise


def _open_dir_without_openat2(path: str) -> int:
    real = os.path.realpath(path)
    if any(p == "/proc" or p.startswith("/proc/") for p in (path, real)):
        raise ContainerError(f"working directory {path!r} leads outside the container")
    return os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
