"""Snapshots: each layer unpacked once, in overlayfs form, keyed by its ChainID.

``<root>/<chain hex>/fs`` holds only that layer's diff (whiteouts as 0/0
character devices, opaque dirs by xattr); a container's rootfs is an overlay
whose lowerdirs are the fs dirs of an image's chain, top-most first. The key
is the ChainID, not the DiffID, because a diff only means something on top of
the layers below it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from paas.engine import layers
from paas.engine.content import check_digest, digest_bytes
from paas.errors import ImageInvalidError


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """ChainIDs per the OCI image spec: ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    chain: list[str] = []
    for diff_id in diff_ids:
        check_digest(diff_id)
        if not chain:
            chain.append(diff_id)
            continue
        joined = f"{chain[-1]} {diff_id}".encode()
        chain.append(digest_bytes(joined))
    return tuple(chain)


class Snapshots:
    """Unpacked layers under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, chain_id: str) -> Path:
        return self.root / check_digest(chain_id)

    def path(self, chain_id: str) -> Path:
        """The ``fs`` dir of a snapshot (whether or not it exists)."""
        return self._dir(chain_id) / "fs"

    def exists(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir()

    def ensure(self, chain_id: str, layer_blob_path: Path) -> Path:
        """Unpack the layer as this snapshot unless it is there already; return its fs dir.

        Safe to call from several processes at once: one unpacks, the others wait.
        """
        fs = self.path(chain_id)
        if fs.is_dir():
            return fs
        with self._locked(chain_id):
            if not fs.is_dir():
                fs.parent.mkdir(exist_ok=True)
                layers.extract_layer(layer_blob_path, fs)
        return fs

    def remove(self, chain_id: str) -> None:
        """Delete a snapshot; the caller makes sure no image or mount still needs it."""
        trash = None
        with self._locked(chain_id):
            directory = self._dir(chain_id)
            if directory.exists():
                # Renamed first so that a crash mid-delete never leaves a half-empty snapshot.
                trash = Path(tempfile.mkdtemp(dir=self.root, prefix=".trash-"))
                os.rename(directory, trash / "snapshot")
            self._lock_path(chain_id).unlink(missing_ok=True)
        if trash is not None:
            shutil.rmtree(trash)

    def list(self) -> list[str]:
        """The ChainIDs of every complete snapshot."""
        found = (f"sha256:{d.name}" for d in self.root.iterdir() if (d / "fs").is_dir())
        return sorted(c for c in found if _is_digest(c))

    def _lock_path(self, chain_id: str) -> Path:
        return self.root / f"{check_digest(chain_id)}.lock"

    @contextlib.contextmanager
    def _locked(self, chain_id: str) -> Iterator[None]:
        """An exclusive lock per snapshot. ``remove`` deletes the lock file while holding it, so
        a waiter that then gets the lock on the deleted file opens the new one and waits again."""
        lock = self._lock_path(chain_id)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)


def _is_digest(value: str) -> bool:
    try:
        check_digest(value)
    except ImageInvalidError:
        return False
    return True
