"""Incoming layer blobs: stored uncompressed, both digests checked while streaming, bombs capped."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import pytest

from paas.engine import layers
from paas.engine.content import ContentStore
from paas.engine.ingest import ingest_layer
from paas.errors import ImageInvalidError, LayerUnsafeError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def content(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def _nothing_stored(content: ContentStore) -> bool:
    return content.digests() == [] and list((content.root / "ingest").iterdir()) == []


RAW = b"layer tar bytes " * 50_000


def test_gzip_layer_is_stored_uncompressed_under_its_diff_id(content: ContentStore) -> None:
    packed = gzip.compress(RAW)
    diff_id = ingest_layer(content, io.BytesIO(packed), digest=sha(packed), diff_id=sha(RAW))
    assert diff_id == sha(RAW)
    assert content.read_bytes(diff_id) == RAW
    assert content.digests() == [sha(RAW)]


def test_plain_layer_digest_is_its_diff_id(content: ContentStore) -> None:
    assert ingest_layer(content, io.BytesIO(RAW), digest=sha(RAW), diff_id=sha(RAW)) == sha(RAW)


@pytest.mark.parametrize(
    ("blob", "kwargs", "error"),
    [
        (gzip.compress(RAW), {"digest": sha(RAW)}, "expected"),  # compressed digest wrong
        (gzip.compress(RAW), {"diff_id": sha(b"other")}, "expected"),  # DiffID wrong
        (gzip.compress(RAW)[:-40], {}, "truncated"),
        (gzip.compress(RAW) + b"trailing junk", {}, "after the end"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 10, {}, "zstd"),
    ],
    ids=["digest-mismatch", "diff-id-mismatch", "truncated-gzip", "trailing-data", "zstd"],
)
def test_bad_blobs_are_refused_and_store_nothing(
    content: ContentStore, blob: bytes, kwargs: dict[str, str], error: str
) -> None:
    with pytest.raises(ImageInvalidError, match=error):
        ingest_layer(content, io.BytesIO(blob), **kwargs)
    assert _nothing_stored(content)


def test_gzip_bomb_is_stopped_while_streaming(content: ContentStore) -> None:
    bomb = gzip.compress(bytes(layers.RATIO_FLOOR + (8 << 20)), compresslevel=1)  # ~1000x
    with pytest.raises(LayerUnsafeError, match="decompression bomb"):
        ingest_layer(content, io.BytesIO(bomb))
    assert _nothing_stored(content)


def test_size_cap(content: ContentStore) -> None:
    with pytest.raises(LayerUnsafeError, match="larger than"):
        ingest_layer(content, io.BytesIO(gzip.compress(RAW)), max_bytes=len(RAW) - 1)
    assert _nothing_stored(content)
