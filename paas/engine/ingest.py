"""Layer blobs coming in from outside (``load``, ``pull``): decompress, cap, verify, store.

The store keeps every layer uncompressed, so a layer's blob digest is its DiffID.
A blob that arrives gzip-compressed is checked twice while it streams: the
compressed bytes against the digest its manifest gives, the uncompressed ones
against the DiffID of the image config. Decompression is capped in size and in
ratio, so a gzip bomb stops with an error instead of filling the disk.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO

from paas.engine.content import CHUNK_SIZE, BlobWriter, ContentStore, check_digest
from paas.engine.layers import MAX_LAYER_BYTES, check_inflation
from paas.errors import ImageInvalidError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def ingest_layer(
    content: ContentStore,
    src: BinaryIO,
    *,
    digest: str | None = None,
    diff_id: str | None = None,
    max_bytes: int = MAX_LAYER_BYTES,
) -> str:
    """Store the layer read from ``src`` (a tar, plain or gzip) uncompressed; return its DiffID.

    ``digest`` is checked against the bytes as read, ``diff_id`` against the tar inside.
    ImageInvalidError on a mismatch, LayerUnsafeError on a bomb; nothing is stored then.
    """
    for expected in (digest, diff_id):
        if expected is not None:
            check_digest(expected)
    head = src.read(4)
    outer = hashlib.sha256(head)
    inflate = _decompressor(head)
    with content.writer(diff_id) as blob:
        read = len(head)
        written = _feed(blob, inflate, head, read, max_bytes)
        while chunk := src.read(CHUNK_SIZE):
            outer.update(chunk)
            read += len(chunk)
            written += _feed(blob, inflate, chunk, read, max_bytes, written)
        if inflate is not None and not inflate.eof:
            raise ImageInvalidError("layer blob: the gzip stream is truncated")
        if digest is not None and f"sha256:{outer.hexdigest()}" != digest:
            raise ImageInvalidError(f"layer blob is sha256:{outer.hexdigest()}, expected {digest}")
    return blob.digest


def _decompressor(head: bytes) -> zlib._Decompress | None:
    if head.startswith(GZIP_MAGIC):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if head.startswith(ZSTD_MAGIC):
        raise ImageInvalidError("layer blob is zstd-compressed, which this engine does not read")
    return None


def _feed(
    blob: BlobWriter, inflate: zlib._Decompress | None, chunk: bytes, read: int, max_bytes: int,
    written: int = 0,
) -> int:
    """Write one chunk (inflated when compressed) in bounded pieces; return the bytes written."""
    total = 0
    data = chunk
    while data:
        if inflate is None:
            piece, data = data, b""
        else:
            piece = inflate.decompress(data, CHUNK_SIZE)
            data = inflate.unconsumed_tail
            if inflate.eof and inflate.unused_data.strip(b"\0"):
                raise ImageInvalidError("layer blob: data after the end of the gzip stream")
        total += len(piece)
        check_inflation(written + total, read, max_bytes)
        blob.write(piece)
    return total
