"""Files uploaded through Xet, read as blobs.

A Xet file is stored once, as chunks in xorbs, and each xorb is an ordinary blob. `XetBlobStore`
wraps the node's blob store so that everyone who reads blobs by BLAKE3 (downloads, `/v1/blobs`,
scans, model metadata, peers, mirrors) also reads Xet files: a blob the store lacks but a
recipe rebuilds is read by decoding the chunks of its xorbs, a bounded segment at a time.
Everything else (writing, listing, deleting bytes) goes to the wrapped store, which holds the
xorbs, and the blobs uploaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from registry.domain.digest import Digest
from registry.domain.errors import BlobNotFoundError
from registry.domain.records import XorbRecord
from registry.domain.xet.reconstruct import Segment, segments
from registry.domain.xet.types import Term, XetHash
from registry.domain.xet.xorb import decode_chunk
from registry.storage import BlobInfo, BlobStore, BlobWriter


@dataclass(frozen=True)
class Recipe:
    """How to rebuild a file: its terms, and the xorbs they name (all held here)."""

    size: int
    terms: tuple[Term, ...]
    xorbs: Mapping[XetHash, XorbRecord]


class Recipes(Protocol):
    def recipe(self, digest: Digest) -> Recipe | None:
        """The recipe of a blob uploaded through Xet, if every xorb of it is held here."""
        ...


def read_recipe(
    store: BlobStore, recipe: Recipe, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """The bytes [start, end) of the file a recipe rebuilds, from its xorbs in `store`. The
    stored bytes of the next segment are read on a second thread while this one decodes, so
    a store's reads (a disk, S3) overlap the decoding; one segment (at most 8 MiB) ahead."""
    end = recipe.size if end is None else min(end, recipe.size)
    if start >= end:
        return
    chunks_of = {h: x.chunks for h, x in recipe.xorbs.items()}
    plan = segments(recipe.terms, chunks_of, recipe.size, start, end - 1)

    def stored(segment: Segment) -> memoryview:
        blob = recipe.xorbs[segment.xorb].blake3
        return memoryview(b"".join(store.open(blob, segment.byte_start, segment.byte_end)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xet-read") as pool:
        ahead = pool.submit(stored, plan[0])
        for index, segment in enumerate(plan):
            data = ahead.result()
            if index + 1 < len(plan):
                ahead = pool.submit(stored, plan[index + 1])
            base = segment.byte_start
            decoded = b"".join(
                decode_chunk(data[c.start - base : c.end - base]) for c in segment.chunks
            )
            yield decoded[segment.skip : segment.skip + segment.take]


class XetBlobStore:
    """A `BlobStore` that also reads the files its recipes rebuild (module docstring)."""

    def __init__(self, store: BlobStore, recipes: Recipes) -> None:
        self._store = store
        self._recipes = recipes

    def stat(self, digest: Digest) -> BlobInfo | None:
        info = self._store.stat(digest)
        if info is not None:
            return info
        recipe = self._recipes.recipe(digest)
        return None if recipe is None else BlobInfo(digest, recipe.size)

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if self._store.stat(digest) is not None:
            return self._store.open(digest, start, end)
        recipe = self._recipes.recipe(digest)
        if recipe is None:
            raise BlobNotFoundError(f"Blob {digest} not found")
        return read_recipe(self._store, recipe, start, end)

    def local_path(self, digest: Digest) -> Path | None:
        return self._store.local_path(digest)

    def writer(
        self, size_hint: int | None = None, *, sha256: bool = True, cache: bool = True
    ) -> BlobWriter:
        return self._store.writer(size_hint, sha256=sha256, cache=cache)

    def delete(self, digest: Digest) -> None:
        self._store.delete(digest)

    def iter_digests(self) -> Iterator[Digest]:
        return self._store.iter_digests()

    def iter_blobs(self) -> Iterator[BlobInfo]:
        return self._store.iter_blobs()

    def set_aside(self, digest: Digest) -> bool:
        return self._store.set_aside(digest)

    def drop_aside(self, digest: Digest) -> None:
        self._store.drop_aside(digest)

    def download_url(self, digest: Digest) -> str | None:
        """The wrapped store's URL, except for a file only its xorbs hold: the node rebuilds
        those bytes itself."""
        url = self._store.download_url(digest)
        if url is None or self._recipes.recipe(digest) is None:
            return url
        return url if self._store.stat(digest) is not None else None

    def failing(self) -> str | None:
        return self._store.failing()

    def clear_uploads(self, older_than: float | None = None, *, dry_run: bool = False) -> int:
        return self._store.clear_uploads(older_than, dry_run=dry_run)
