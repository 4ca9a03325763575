"""The content store against a real directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from paas.engine.content import ContentStore, check_digest, digest_bytes
from paas.errors import BlobNotFoundError, ImageInvalidError


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def test_ingest_bytes_addresses_by_sha256(store: ContentStore) -> None:
    digest = store.ingest_bytes(b"hello")
    assert digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.has(digest)
    assert store.path(digest) == store.root / "blobs" / "sha256" / digest[7:]
    assert store.read_bytes(digest) == b"hello"
    assert store.size(digest) == 5


def test_ingest_file_streams_and_is_idempotent(store: ContentStore, tmp_path: Path) -> None:
    src = tmp_path / "big"
    data = os.urandom(3 * 1024 * 1024 + 7)
    src.write_bytes(data)
    first = store.ingest_file(src)
    second = store.ingest_file(src)
    assert first == second == digest_bytes(data)
    with store.open(first) as f:
        assert f.read() == data
    assert list((store.root / "ingest").iterdir()) == []


def test_writer_sets_digest_and_leaves_no_temp_on_error(store: ContentStore) -> None:
    with store.writer() as blob:
        blob.write(b"a")
        blob.write(b"b")
    assert blob.digest == digest_bytes(b"ab") and blob.size == 2
    with pytest.raises(RuntimeError), store.writer() as blob:
        blob.write(b"partial")
        raise RuntimeError("interrupted")
    assert not store.has(digest_bytes(b"partial"))
    assert list((store.root / "ingest").iterdir()) == []


def test_expected_digest_mismatch_stores_nothing(store: ContentStore) -> None:
    wrong = digest_bytes(b"other")
    with pytest.raises(ImageInvalidError):
        store.ingest_bytes(b"data", expected=wrong)
    assert store.digests() == []
    assert store.ingest_bytes(b"data", expected=digest_bytes(b"data")) == digest_bytes(b"data")


def test_verify_detects_corruption(store: ContentStore) -> None:
    digest = store.ingest_bytes(b"precious")
    store.verify(digest)
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(ImageInvalidError, match="corrupt"):
        store.verify(digest)


def test_delete_and_missing_blobs(store: ContentStore) -> None:
    digest = store.ingest_bytes(b"x")
    store.delete(digest)
    store.delete(digest)
    assert not store.has(digest)
    with pytest.raises(BlobNotFoundError):
        store.open(digest)
    with pytest.raises(BlobNotFoundError):
        store.verify(digest)


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 64 + "/",
        "sha512:" + "0" * 64,
        "0" * 64,
        "sha256:" + "0" * 64 + "\n",
        "",
    ],
)
def test_digests_are_validated_strictly(store: ContentStore, bad: str) -> None:
    with pytest.raises(ImageInvalidError):
        check_digest(bad)
    with pytest.raises(ImageInvalidError):
        store.path(bad)
    with pytest.raises(ImageInvalidError):
        store.has(bad)
    with pytest.raises(ImageInvalidError):
        store.delete(bad)
