"""One BlobStore contract, run against every backend (an S3 backend joins the params later)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError, DigestMismatchError, SizeMismatchError
from registry.storage import BlobStore, Expected, put
from registry.storage.local import LocalBlobStore
from registry.storage.memory import MemoryBlobStore


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    return LocalBlobStore(tmp_path / "store")


def digest_of(data: bytes) -> Digest:
    return Digest(blake3.blake3(data).hexdigest())


def read(store: BlobStore, digest: Digest, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open(digest, start, end))


def leftovers(store: BlobStore) -> list[Path]:
    if isinstance(store, LocalBlobStore):
        return [p for p in store.root.rglob("*") if p.is_file()]
    return []


class TestBlobStoreContract:
    def test_put_then_stat_and_read_whole_and_ranges(self, store: BlobStore) -> None:
        data = os.urandom(10 * 1024 * 1024 + 17)  # crosses the O_DIRECT stage size
        digest = digest_of(data)
        hashes = put(store, Expected(blake3=digest, size=len(data)), [data[:3], data[3:]])
        assert hashes.blake3 == digest and hashes.size == len(data)
        assert hashes.sha256 == hashlib.sha256(data).hexdigest()
        info = store.stat(digest)
        assert info is not None and info.size == len(data)
        assert read(store, digest) == data
        assert read(store, digest, 5, 4_200_000) == data[5:4_200_000]
        assert read(store, digest, 7, 7) == b""
        assert read(store, digest, len(data) - 3, len(data) + 100) == data[-3:]
        assert list(store.iter_digests()) == [digest]

    def test_git_sha1_only_for_small_files_of_known_size(self, store: BlobStore) -> None:
        data = b"hello world"
        known = put(store, Expected(size=len(data)), [data])
        assert known.git_sha1 == "95d09f2b10159347eece71399a7e2e907ea3df4f"
        unknown = put(store, Expected(), [b"other"])
        assert unknown.git_sha1 is None

    @pytest.mark.parametrize("wrong", ["blake3", "sha256", "size"])
    def test_mismatch_leaves_nothing_visible(self, store: BlobStore, wrong: str) -> None:
        data = os.urandom(100_000)
        expected = {
            "blake3": Expected(blake3=digest_of(b"other")),
            "sha256": Expected(sha256=hashlib.sha256(b"other").hexdigest()),
            "size": Expected(size=len(data) - 1),
        }[wrong]
        error = SizeMismatchError if wrong == "size" else DigestMismatchError
        with pytest.raises(error):
            put(store, expected, [data])
        assert store.stat(digest_of(data)) is None
        assert list(store.iter_digests()) == []
        assert leftovers(store) == []

    def test_abort_leaves_nothing(self, store: BlobStore) -> None:
        writer = store.writer(20 * 1024 * 1024)
        writer.write(os.urandom(5 * 1024 * 1024))
        writer.abort()
        assert list(store.iter_digests()) == [] and leftovers(store) == []

    def test_same_bytes_twice_are_stored_once(self, store: BlobStore) -> None:
        data = os.urandom(50_000)
        for _ in range(2):
            put(store, Expected(blake3=digest_of(data)), [data])
        assert list(store.iter_digests()) == [digest_of(data)]
        if isinstance(store, LocalBlobStore):
            assert len(leftovers(store)) == 1

    def test_concurrent_writers_of_one_blob_end_with_one_intact_copy(
        self, store: BlobStore
    ) -> None:
        data = os.urandom(2 * 1024 * 1024)
        errors: list[BaseException] = []

        def write() -> None:
            try:
                put(
                    store,
                    Expected(blake3=digest_of(data), size=len(data)),
                    [data[i : i + 65536] for i in range(0, len(data), 65536)],
                )
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert read(store, digest_of(data)) == data
        assert list(store.iter_digests()) == [digest_of(data)]

    def test_delete_and_missing_blobs(self, store: BlobStore) -> None:
        data = b"to be deleted"
        put(store, Expected(), [data])
        store.delete(digest_of(data))
        store.delete(digest_of(data))  # idempotent
        assert store.stat(digest_of(data)) is None
        with pytest.raises(BlobNotFoundError):
            read(store, digest_of(data))

    def test_failure_while_writing_aborts(self, store: BlobStore) -> None:
        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise OSError("source died")

        with pytest.raises(OSError):
            put(store, Expected(), broken())
        assert list(store.iter_digests()) == [] and leftovers(store) == []


def test_local_store_clears_interrupted_uploads(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    writer = store.writer(None)
    writer.write(b"interrupted")  # the process dies here: the temp file stays behind
    assert store.clear_uploads() == 1
    assert list((tmp_path / "uploads").iterdir()) == []
    writer.abort()  # closes the descriptor the "dead process" held
