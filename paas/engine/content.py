"""The content store: immutable blobs addressed by their sha256 digest.

Blobs live at ``<root>/blobs/sha256/<hex>``. Every write goes through a temp
file under ``<root>/ingest`` that is hashed while written and renamed into
place only when complete, so a reader never sees a partial blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from paas.errors import BlobNotFoundError, ImageInvalidError

ALGORITHM = "sha256"
CHUNK_SIZE = 1 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def check_digest(digest: str) -> str:
    """Return the hex part of a strict ``sha256:<64 hex>`` digest, or raise ImageInvalidError."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ImageInvalidError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


def digest_bytes(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of some bytes."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def digest_file(path: Path) -> str:
    """The ``sha256:<hex>`` digest of a file's content, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return f"{ALGORITHM}:{hasher.hexdigest()}"


class BlobWriter:
    """A file being written into the store; hashes what passes through ``write``."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._hasher = hashlib.sha256()
        self.size = 0
        self.digest = ""

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        self.size += len(data)
        return self._file.write(data)

    def _finish(self) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        self.digest = f"{ALGORITHM}:{self._hasher.hexdigest()}"
        return self.digest


class ContentStore:
    """Blobs by digest under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / ALGORITHM
        self._ingest = self.root / "ingest"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        return self._blobs / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    @contextlib.contextmanager
    def writer(self, expected: str | None = None) -> Iterator[BlobWriter]:
        """Stream a blob in; on a clean exit it is renamed into place and ``.digest`` is set.

        With ``expected``, a content mismatch raises ImageInvalidError and stores nothing.
        """
        if expected is not None:
            check_digest(expected)
        fd, tmp_name = tempfile.mkstemp(dir=self._ingest, prefix="blob-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                blob = BlobWriter(f)
                yield blob
                digest = blob._finish()
            if expected is not None and digest != expected:
                raise ImageInvalidError(f"content is {digest}, expected {expected}")
            os.chmod(tmp, 0o444)
            os.replace(tmp, self.path(digest))
        finally:
            tmp.unlink(missing_ok=True)

    def ingest_bytes(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected) as blob:
            blob.write(data)
        return blob.digest

    def ingest_file(self, path: Path, expected: str | None = None) -> str:
        with open(path, "rb") as src, self.writer(expected) as blob:
            shutil.copyfileobj(src, blob, CHUNK_SIZE)  # type: ignore[misc]
        return blob.digest

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.root}") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.root}") from None

    def verify(self, digest: str) -> None:
        """Re-hash a stored blob; raise ImageInvalidError if it no longer matches."""
        if not self.has(digest):
            raise BlobNotFoundError(f"no blob {digest} in {self.root}")
        actual = digest_file(self.path(digest))
        if actual != digest:
            raise ImageInvalidError(f"blob {digest} is corrupt: its content hashes to {actual}")

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        """Every stored digest, sorted."""
        names = (p.name for p in self._blobs.iterdir())
        return sorted(f"{ALGORITHM}:{n}" for n in names if _DIGEST_RE.fullmatch(f"sha256:{n}"))
