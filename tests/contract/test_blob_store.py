"""One BlobStore contract, run against every backend (S3: moto's server on 127.0.0.1).

Backend-specific checks (files on disk, S3 parts, how a leftover upload's age is known) sit
after the class; everything in the class must hold for any backend that claims to be a
BlobStore.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import blake3
import httpx
import pytest

from registry.domain.digest import REGULAR_FILE_MAX, Digest, Hashes
from registry.domain.errors import BlobNotFoundError, DigestMismatchError, SizeMismatchError
from registry.storage import BlobStore, Expected, put
from registry.storage.local import DIRECT_MIN, LocalBlobStore
from registry.storage.memory import MemoryBlobStore
from registry.storage.s3 import PART as S3_PART
from registry.storage.s3 import S3BlobStore

pytestmark = pytest.mark.all_backends  # its backends are its own: run once, not per backend

BACKENDS = ["memory", "local", "local-direct", "s3"]
# Known-size uploads this big are written on a second thread ("local-direct": with O_DIRECT).
LARGE = DIRECT_MIN + 4 * 1024 * 1024 + 17


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    match request.param:
        case "memory":
            return MemoryBlobStore()
        case "local":
            return LocalBlobStore(tmp_path / "store")
        case "local-direct":  # what uploads larger than a quarter of memory take
            return LocalBlobStore(tmp_path / "store", direct_from=DIRECT_MIN)
        case "s3":
            bucket = request.getfixturevalue("s3_bucket")
            return S3BlobStore(f"s3://{bucket}/node/blobs")
    raise AssertionError(f"unknown backend {request.param}")


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def digest_of(data: bytes) -> Digest:
    return Digest(blake3.blake3(data).hexdigest())


def chunked(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read(store: BlobStore, digest: Digest, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open(digest, start, end))


def files_on_disk(store: BlobStore) -> list[Path]:
    """Every file the backend keeps on a local disk (blobs and uploads); [] if it has none."""
    if isinstance(store, LocalBlobStore):
        return sorted(p for p in store.root.rglob("*") if p.is_file())
    return []


def objects_in_bucket(store: BlobStore) -> list[str]:
    """Every key and unfinished multipart upload an S3 store keeps; [] for other backends."""
    if not isinstance(store, S3BlobStore):
        return []
    listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    pending = store.s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    keys = [item["Key"] for item in listed.get("Contents", [])]
    return sorted(keys + [f"multipart:{item['Key']}" for item in pending.get("Uploads", [])])


def staged_uploads(store: BlobStore) -> set[str]:
    """What uploads in progress keep in the backend: files under `uploads/` (local), keys and
    unfinished multipart uploads under `uploads/` (S3); nothing (memory keeps them in writers)."""
    if isinstance(store, LocalBlobStore):
        return {p.name for p in (store.root / "uploads").iterdir()}
    if isinstance(store, S3BlobStore):
        uploads = f"{store.prefix}uploads/"
        keys = objects_in_bucket(store)
        return {k for k in keys if k.removeprefix("multipart:").startswith(uploads)}
    return set()


def abandon_in_a_dead_process(store: LocalBlobStore, sizes: list[int]) -> None:
    """Uploads a process began and then died in (exit without cleanup): unlocked leftovers."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from registry.storage.local import LocalBlobStore\n"
        "store = LocalBlobStore(Path(sys.argv[1]))\n"
        "for size in map(int, sys.argv[2:]):\n"
        "    store.writer(size).write(os.urandom(size - 1))\n"
        "os._exit(0)\n"
    )
    args = [str(store.root), *map(str, sizes)]
    subprocess.run([sys.executable, "-c", script, *args], check=True, timeout=60)


def assert_empty(store: BlobStore, *digests: Digest) -> None:
    for digest in digests:
        assert store.stat(digest) is None
    assert list(store.iter_digests()) == []
    assert files_on_disk(store) == []
    assert objects_in_bucket(store) == []


class TestBlobStoreContract:
    def test_put_returns_every_hash_of_the_content(self, store: BlobStore) -> None:
        data = b"hello world"
        hashes = put(store, Expected(size=len(data)), [b"hello", b" ", b"world"])
        assert hashes == Hashes(
            blake3=Digest(blake3.blake3(data).hexdigest()),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            git_sha1=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        )
        assert hashes.git_sha1 == "95d09f2b10159347eece71399a7e2e907ea3df4f"  # `git hash-object`

    def test_put_hashes_large_content_in_one_pass(self, store: BlobStore) -> None:
        data = payload(LARGE)
        hashes = put(store, Expected(size=len(data)), chunked(data, 1024 * 1024 + 3))
        assert hashes.blake3 == digest_of(data)
        assert hashes.sha256 == hashlib.sha256(data).hexdigest()
        assert hashes.size == len(data)
        assert hashes.git_sha1 is None  # above REGULAR_FILE_MAX: an LFS file, no git sha1

    @pytest.mark.parametrize("size", [0, 100, REGULAR_FILE_MAX])
    def test_put_git_sha1_is_none_when_size_unknown(self, store: BlobStore, size: int) -> None:
        data = payload(size)
        hashes = put(store, Expected(), chunked(data))
        assert hashes.git_sha1 is None
        assert (hashes.blake3, hashes.size) == (digest_of(data), size)

    def test_put_git_sha1_of_largest_regular_file(self, store: BlobStore) -> None:
        data = payload(REGULAR_FILE_MAX, seed=1)
        hashes = put(store, Expected(size=len(data)), chunked(data, 4 * 1024 * 1024))
        assert hashes.git_sha1 == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def test_put_then_stat_and_open_return_the_blob(self, store: BlobStore) -> None:
        data = payload(LARGE)
        digest = put(store, Expected(blake3=digest_of(data), size=len(data)), chunked(data)).blake3
        info = store.stat(digest)
        assert info is not None and (info.digest, info.size) == (digest, len(data))
        assert read(store, digest) == data
        assert list(store.iter_digests()) == [digest]

    def test_open_returns_the_requested_range(self, store: BlobStore) -> None:
        data = payload(LARGE)
        digest = put(store, Expected(), chunked(data)).blake3
        size = len(data)
        ranges: list[tuple[int, int | None]] = [
            (0, 1),
            (5, 4_200_000),  # crosses read-chunk boundaries
            (4096, 8192),
            (size - 3, size),
            (0, size),
            (123, None),
            (7, 7),  # start == end: empty
            (0, 0),
            (size - 3, size + 100),  # end beyond the size: clipped
            (size, None),  # start at the end: empty
            (size + 10, size + 20),  # wholly beyond the end: empty
        ]
        for start, end in ranges:
            assert read(store, digest, start, end) == data[start:end], (start, end)

    def test_put_and_open_an_empty_blob(self, store: BlobStore) -> None:
        hashes = put(store, Expected(size=0), [])
        assert hashes.blake3 == digest_of(b"") and hashes.sha256 == hashlib.sha256().hexdigest()
        assert hashes.git_sha1 == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # the empty blob
        info = store.stat(hashes.blake3)
        assert info is not None and info.size == 0
        assert read(store, hashes.blake3) == b""

    @pytest.mark.parametrize("size", [300_000, LARGE])
    def test_writer_accepts_bytearray_and_memoryview(self, store: BlobStore, size: int) -> None:
        data = payload(size)
        writer = store.writer(size)
        writer.write(bytearray(data[:1000]))  # the HTTP layer hands over bytearray pieces
        writer.write(memoryview(data)[1000:])
        writer.write(b"")
        assert writer.commit(Expected(size=size)).blake3 == digest_of(data)
        assert read(store, digest_of(data)) == data

    @pytest.mark.parametrize("size", [300_000, LARGE])
    def test_writer_for_bytes_not_read_soon_stores_the_same(
        self, store: BlobStore, size: int
    ) -> None:
        data = payload(size)
        writer = store.writer(size, cache=False)  # a background catch-up's
        for chunk in chunked(data, 4 << 20):
            writer.write(chunk)
        assert writer.commit(Expected(size=size)).blake3 == digest_of(data)
        assert read(store, digest_of(data)) == data
        assert read(store, digest_of(data), size - 5000, size - 17) == data[-5000:-17]

    @pytest.mark.parametrize("size", [100_000, LARGE])
    @pytest.mark.parametrize("wrong", ["blake3", "sha256", "size_short", "size_long"])
    def test_put_mismatch_raises_and_leaves_nothing(
        self, store: BlobStore, wrong: str, size: int
    ) -> None:
        data = payload(size)
        expected, error = {
            "blake3": (Expected(blake3=digest_of(b"other")), DigestMismatchError),
            "sha256": (Expected(sha256=hashlib.sha256(b"other").hexdigest()), DigestMismatchError),
            "size_short": (Expected(size=len(data) - 1), SizeMismatchError),
            "size_long": (Expected(size=len(data) + 1), SizeMismatchError),
        }[wrong]
        with pytest.raises(error):
            put(store, expected, chunked(data, 1024 * 1024))
        assert_empty(store, digest_of(data), digest_of(b"other"))

    def test_put_mismatch_keeps_an_existing_copy(self, store: BlobStore) -> None:
        data = payload(50_000)
        put(store, Expected(), [data])
        with pytest.raises(SizeMismatchError):
            put(store, Expected(size=1), [data])
        with pytest.raises(DigestMismatchError):
            put(store, Expected(blake3=digest_of(data)), [data + b"x"])
        assert read(store, digest_of(data)) == data
        assert list(store.iter_digests()) == [digest_of(data)]

    def test_put_same_bytes_twice_stores_them_once(self, store: BlobStore) -> None:
        data = payload(50_000)
        first = put(store, Expected(blake3=digest_of(data), size=len(data)), [data])
        second = put(store, Expected(blake3=digest_of(data), size=len(data)), chunked(data, 7))
        assert first == second
        assert list(store.iter_digests()) == [digest_of(data)]
        assert read(store, digest_of(data)) == data
        if isinstance(store, LocalBlobStore):
            assert files_on_disk(store) == [store.path_of(digest_of(data))]
        if isinstance(store, S3BlobStore):
            assert objects_in_bucket(store) == [store.key_of(digest_of(data))]

    @pytest.mark.parametrize("size_hint", [None, 1000, LARGE])
    def test_writer_abort_leaves_nothing(self, store: BlobStore, size_hint: int | None) -> None:
        data = payload(5 * 1024 * 1024 + 1)
        writer = store.writer(size_hint)
        for chunk in chunked(data, 1024 * 1024):
            writer.write(chunk)
        writer.abort()
        writer.abort()  # idempotent: a second abort (e.g. from a finally) is harmless
        assert_empty(store, digest_of(data))

    def test_put_aborts_when_the_source_fails(self, store: BlobStore) -> None:
        def broken() -> Iterator[bytes]:
            yield payload(5 * 1024 * 1024)
            raise OSError("source died")

        with pytest.raises(OSError, match="source died"):
            put(store, Expected(size=LARGE), broken())
        assert_empty(store)

    def test_delete_removes_only_that_blob(self, store: BlobStore) -> None:
        keep, gone = payload(1000, seed=1), payload(1000, seed=2)
        put(store, Expected(), [keep])
        put(store, Expected(), [gone])
        store.delete(digest_of(gone))
        assert store.stat(digest_of(gone)) is None
        with pytest.raises(BlobNotFoundError):
            read(store, digest_of(gone))
        assert list(store.iter_digests()) == [digest_of(keep)]
        assert read(store, digest_of(keep)) == keep

    def test_delete_of_a_missing_blob_is_a_no_op(self, store: BlobStore) -> None:
        store.delete(digest_of(b"never stored"))
        assert list(store.iter_digests()) == []

    def test_blob_can_be_stored_again_after_delete(self, store: BlobStore) -> None:
        data = payload(1000)
        put(store, Expected(), [data])
        store.delete(digest_of(data))
        put(store, Expected(blake3=digest_of(data)), [data])
        assert read(store, digest_of(data)) == data

    def test_set_aside_hides_a_blob_until_it_is_stored_again(self, store: BlobStore) -> None:
        keep, bad = payload(1000, seed=1), payload(1000, seed=2)
        put(store, Expected(), [keep])
        put(store, Expected(), [bad])
        assert store.set_aside(digest_of(bad)) is True
        assert store.stat(digest_of(bad)) is None
        with pytest.raises(BlobNotFoundError):
            read(store, digest_of(bad))
        assert list(store.iter_digests()) == [digest_of(keep)]
        assert store.set_aside(digest_of(bad)) is False  # nothing left to move
        put(store, Expected(blake3=digest_of(bad)), [bad])
        assert read(store, digest_of(bad)) == bad
        store.drop_aside(digest_of(bad))
        store.drop_aside(digest_of(bad))  # nothing left to drop: harmless
        assert read(store, digest_of(bad)) == bad and read(store, digest_of(keep)) == keep
        store.delete(digest_of(keep))
        store.delete(digest_of(bad))
        assert_empty(store)

    def test_set_aside_of_a_missing_blob_is_a_no_op(self, store: BlobStore) -> None:
        assert store.set_aside(digest_of(b"never stored")) is False
        store.drop_aside(digest_of(b"never stored"))
        assert_empty(store)

    def test_iter_digests_lists_every_blob_once(self, store: BlobStore) -> None:
        blobs = [payload(100 + i, seed=i) for i in range(20)]
        for data in blobs + blobs[:5]:
            put(store, Expected(), [data])
        listed = list(store.iter_digests())
        assert len(listed) == len(set(listed)) == 20
        assert set(listed) == {digest_of(data) for data in blobs}

    def test_iter_blobs_lists_every_blob_with_its_size_and_time(self, store: BlobStore) -> None:
        before = time.time() - 5  # S3 keeps whole seconds; clocks of a store may differ a bit
        blobs = [payload(10 + i, seed=i) for i in range(5)]
        for data in blobs + blobs[:2]:
            put(store, Expected(), [data])
        store.delete(digest_of(blobs[4]))
        listed = list(store.iter_blobs())
        assert sorted((b.digest, b.size) for b in listed) == sorted(
            (digest_of(data), len(data)) for data in blobs[:4]
        )
        for info in listed:
            assert info.modified is not None and before <= info.modified <= time.time() + 5

    def test_open_of_a_missing_digest_raises_blob_not_found(self, store: BlobStore) -> None:
        missing = digest_of(b"never stored")
        assert store.stat(missing) is None
        with pytest.raises(BlobNotFoundError):
            read(store, missing)
        with pytest.raises(BlobNotFoundError):
            read(store, missing, 0, 10)

    @pytest.mark.parametrize("size", [2 * 1024 * 1024, LARGE])
    def test_concurrent_writers_of_one_content_end_with_one_intact_blob(
        self, store: BlobStore, size: int
    ) -> None:
        data = payload(size)
        results: list[Hashes] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def write() -> None:
            try:
                barrier.wait(timeout=10)  # all writers in flight at once
                results.append(
                    put(store, Expected(blake3=digest_of(data), size=size), chunked(data))
                )
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert len(results) == 6 and len(set(results)) == 1
        assert list(store.iter_digests()) == [digest_of(data)]
        assert read(store, digest_of(data)) == data
        if isinstance(store, LocalBlobStore):
            assert files_on_disk(store) == [store.path_of(digest_of(data))]
        if isinstance(store, S3BlobStore):
            assert objects_in_bucket(store) == [store.key_of(digest_of(data))]

    def test_download_url_serves_the_exact_bytes_when_the_store_has_one(
        self, store: BlobStore
    ) -> None:
        data = payload(300_000)
        digest = put(store, Expected(), [data]).blake3
        url = store.download_url(digest)
        assert (url is not None) == isinstance(store, S3BlobStore)  # local, memory: the node
        if url is None:
            return
        with httpx.Client(timeout=30) as http:  # plain HTTP, no credentials: the URL suffices
            whole = http.get(url)
            part = http.get(url, headers={"Range": "bytes=1000-1999"})
        assert (whole.status_code, whole.content) == (200, data)
        assert (part.status_code, part.content) == (206, data[1000:2000])

    def test_clear_uploads_removes_an_abandoned_upload_and_nothing_else(
        self, store: BlobStore
    ) -> None:
        kept = put(store, Expected(), [b"complete"]).blake3
        abandoned = None
        if isinstance(store, LocalBlobStore):  # a writer alive in this process holds a lock
            abandon_in_a_dead_process(store, [S3_PART + 2])
        else:  # S3: one part sent, a multipart upload pending
            abandoned = store.writer()
            abandoned.write(payload(S3_PART + 1))
        staged = staged_uploads(store)
        assert len(staged) == (0 if isinstance(store, MemoryBlobStore) else 1)
        assert store.clear_uploads(older_than=-60, dry_run=True) == len(staged)
        assert staged_uploads(store) == staged
        assert store.clear_uploads(older_than=-60) == len(staged)  # -60: even one just begun
        assert staged_uploads(store) == set()
        assert store.clear_uploads(older_than=-60) == 0
        assert list(store.iter_digests()) == [kept] and read(store, kept) == b"complete"
        if abandoned is not None:
            abandoned.abort()  # what it staged is gone already: harmless

    def test_clear_uploads_older_than_spares_an_upload_in_progress(self, store: BlobStore) -> None:
        data = payload(S3_PART + 1)
        writer = store.writer(len(data))
        writer.write(data[:-1])
        staged = staged_uploads(store)
        assert store.clear_uploads(older_than=600, dry_run=True) == 0
        assert store.clear_uploads(older_than=600) == 0
        assert staged_uploads(store) == staged
        writer.write(data[-1:])
        assert writer.commit(Expected(size=len(data))).blake3 == digest_of(data)
        assert read(store, digest_of(data)) == data
        assert staged_uploads(store) == set()

    def test_clear_uploads_by_default_keeps_every_blob(self, store: BlobStore) -> None:
        blobs = [payload(1000, seed=i) for i in range(3)]
        for data in blobs:
            put(store, Expected(), [data])
        store.clear_uploads()
        assert sorted(store.iter_digests()) == sorted(digest_of(data) for data in blobs)
        assert all(read(store, digest_of(data)) == data for data in blobs)


def test_local_store_layout_is_sharded_by_blake3(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = payload(1000)
    digest = put(store, Expected(), [data]).blake3
    path = tmp_path / "blobs" / "blake3" / digest.hex[:2] / digest.hex
    assert store.path_of(digest) == store.local_path(digest) == path
    assert path.read_bytes() == data
    assert list((tmp_path / "uploads").iterdir()) == []


@pytest.mark.parametrize("size", [DIRECT_MIN - 1, LARGE])
def test_local_store_upload_is_in_the_page_cache_once_stored(tmp_path: Path, size: int) -> None:
    """The first read after an upload needs no disk: reading with RWF_NOWAIT (which fails
    with EAGAIN rather than wait for the disk) gets every byte."""
    data = payload(size)
    digest = put(LocalBlobStore(tmp_path), Expected(size=size), chunked(data, 4 << 20)).blake3
    fd = os.open(LocalBlobStore(tmp_path).path_of(digest), os.O_RDONLY)
    try:
        buffer = bytearray(size)
        assert os.preadv(fd, [buffer], 0, os.RWF_NOWAIT) == size
    finally:
        os.close(fd)
    assert buffer == data


def test_local_store_writes_bytes_not_read_soon_around_the_page_cache(tmp_path: Path) -> None:
    """`cache=False` (a background catch-up): the bytes go to the disk with O_DIRECT, so
    reading them with RWF_NOWAIT finds them absent from the page cache (EAGAIN)."""
    data = payload(LARGE)
    store = LocalBlobStore(tmp_path)
    writer = store.writer(LARGE, cache=False)
    for chunk in chunked(data, 4 << 20):
        writer.write(chunk)
    digest = writer.commit(Expected(size=LARGE)).blake3
    fd = os.open(store.path_of(digest), os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            os.preadv(fd, [bytearray(4 << 20)], 0, os.RWF_NOWAIT)
    finally:
        os.close(fd)
    assert read(store, digest) == data


def test_local_store_sets_bytes_aside_under_quarantine(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    data = payload(100)
    digest = put(store, Expected(), [data]).blake3
    store.set_aside(digest)
    assert files_on_disk(store) == [tmp_path / "store" / "quarantine" / digest.hex]
    assert files_on_disk(store)[0].read_bytes() == data  # kept for an operator to inspect
    store.drop_aside(digest)
    assert files_on_disk(store) == []


def test_local_store_keeps_blobs_across_instances(tmp_path: Path) -> None:
    data = payload(1000)
    digest = put(LocalBlobStore(tmp_path), Expected(), [data]).blake3
    reopened = LocalBlobStore(tmp_path)
    assert list(reopened.iter_digests()) == [digest]
    assert read(reopened, digest) == data


def test_local_store_clear_uploads_removes_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    kept = put(store, Expected(), [b"complete"]).blake3
    abandon_in_a_dead_process(store, [100, LARGE])  # small and O_DIRECT temp files stay
    assert len(list((tmp_path / "uploads").iterdir())) == 2
    assert store.clear_uploads() == 2
    assert list((tmp_path / "uploads").iterdir()) == []
    assert store.clear_uploads() == 0
    assert list(store.iter_digests()) == [kept] and read(store, kept) == b"complete"


def test_local_store_clear_uploads_never_takes_an_upload_a_live_writer_holds(
    tmp_path: Path,
) -> None:
    """gc --grace 0 in another process beside a serving node: the upload in progress (small
    or O_DIRECT) is locked and kept, and commits whole."""
    store = LocalBlobStore(tmp_path)
    data = [payload(100), payload(LARGE, seed=1)]
    writers = [store.writer(len(d)) for d in data]
    for writer, d in zip(writers, data, strict=True):
        writer.write(d)
    gc = (
        "import sys\nfrom pathlib import Path\nfrom registry.storage.local import LocalBlobStore\n"
        "print(LocalBlobStore(Path(sys.argv[1])).clear_uploads(older_than=-60))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", gc, str(tmp_path)], capture_output=True, check=True, timeout=60
    )
    assert done.stdout.strip() == b"0"
    assert store.clear_uploads(older_than=-60) == 0  # this process's own gc too
    for writer, d in zip(writers, data, strict=True):
        assert writer.commit(Expected(size=len(d))).blake3 == digest_of(d)
        assert read(store, digest_of(d)) == d
    assert list((tmp_path / "uploads").iterdir()) == []


def test_local_store_clear_uploads_older_than_takes_only_old_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    abandon_in_a_dead_process(store, [100, 100])
    stalled, recent = sorted((tmp_path / "uploads").iterdir())
    an_hour_ago = time.time() - 3600
    os.utime(stalled, (an_hour_ago, an_hour_ago))  # no write for an hour
    busy = store.writer(100)
    busy.write(b"writing")
    assert store.clear_uploads(older_than=600, dry_run=True) == 1
    assert len(list((tmp_path / "uploads").iterdir())) == 3
    assert store.clear_uploads(older_than=600) == 1
    assert not stalled.exists() and recent.exists()
    busy.write(b" on")
    assert put(store, Expected(), [b"after"]).size == 5
    assert busy.commit(Expected(size=len(b"writing on"))).size == len(b"writing on")
    assert list((tmp_path / "uploads").iterdir()) == [recent]


MULTIPART = 2 * S3_PART + 5  # three parts: the multipart path, the last part short


def test_s3_store_large_upload_goes_up_in_parts_and_leaves_only_the_blob(s3_bucket: str) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}/p")
    data = payload(MULTIPART, seed=3)
    digest = put(store, Expected(size=len(data)), chunked(data, 3 * 1024 * 1024)).blake3
    assert objects_in_bucket(store) == [store.key_of(digest)]
    assert read(store, digest, S3_PART - 1, S3_PART + 1) == data[S3_PART - 1 : S3_PART + 1]
    assert read(store, digest) == data
    again = put(store, Expected(blake3=digest), chunked(data, 5 * 1024 * 1024))
    assert again.blake3 == digest and objects_in_bucket(store) == [store.key_of(digest)]


def test_s3_store_writes_again_a_blob_another_process_set_aside(s3_bucket: str) -> None:
    mine, theirs = S3BlobStore(f"s3://{s3_bucket}/p"), S3BlobStore(f"s3://{s3_bucket}/p")
    data = payload(MULTIPART, seed=5)
    digest = put(mine, Expected(size=len(data)), chunked(data, 4 * 1024 * 1024)).blake3
    assert mine.stat(digest) is not None  # now remembered by `mine`
    assert theirs.set_aside(digest)
    again = put(mine, Expected(blake3=digest), chunked(data, 4 * 1024 * 1024))  # multipart
    assert again.blake3 == digest and read(theirs, digest) == data
    assert objects_in_bucket(mine) == sorted([mine.key_of(digest), mine.aside_key_of(digest)])


def test_s3_store_large_mismatch_aborts_the_multipart_upload(s3_bucket: str) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}/p")
    data = payload(MULTIPART, seed=4)
    with pytest.raises(DigestMismatchError):
        put(store, Expected(blake3=digest_of(b"other")), chunked(data, 4 * 1024 * 1024))
    assert objects_in_bucket(store) == []


def test_s3_store_clear_uploads_aborts_only_stale_ones(s3_bucket: str) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}/p")
    writer = store.writer()
    writer.write(payload(S3_PART + 1))  # one part sent: a multipart upload is pending
    assert len(objects_in_bucket(store)) == 1
    assert store.clear_uploads() == 0  # young: another process may be uploading it
    assert store.clear_uploads(older_than=-60, dry_run=True) == 1
    assert len(objects_in_bucket(store)) == 1
    assert store.clear_uploads(older_than=-60) == 1
    assert objects_in_bucket(store) == []
    writer.abort()  # the upload is gone already: aborting again is harmless


def test_s3_store_clear_uploads_reads_the_age_of_an_upload_from_its_key(s3_bucket: str) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}/p")
    an_hour_ago = int((time.time() - 3600) * 1000)
    # What crashes an hour ago left: a multipart upload, and a completed one not yet copied.
    crashed = f"{store.prefix}uploads/{an_hour_ago}-{uuid.uuid4().hex}"
    store.s3.create_multipart_upload(Bucket=s3_bucket, Key=crashed)
    completed = f"{store.prefix}uploads/{an_hour_ago}-{uuid.uuid4().hex}"
    store.s3.put_object(Bucket=s3_bucket, Key=completed, Body=b"staged")
    data = payload(S3_PART + 1)
    young = store.writer(len(data))
    young.write(data)
    assert len(staged_uploads(store)) == 3
    assert store.clear_uploads(older_than=600, dry_run=True) == 2
    assert len(staged_uploads(store)) == 3
    assert store.clear_uploads(older_than=600) == 2
    left = staged_uploads(store)
    assert len(left) == 1 and left.isdisjoint({f"multipart:{crashed}", completed})
    assert young.commit(Expected(size=len(data))).blake3 == digest_of(data)
    assert objects_in_bucket(store) == [store.key_of(digest_of(data))]
