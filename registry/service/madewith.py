""" "Made with" links: the model files an image's generation data names, resolved to files on
this node (peers' replicated repos included: they are repos here), and the other way round,
the images that used a file.

A resource is resolved when asked about, never stored resolved, so a LoRA that arrives after
the image links without reading the image again. By hash first (the hashes tools write:
AutoV2, AutoV3, AutoV1, SHA-256, kohya's; see `registry.service.lookup`), then by file name
(base name, any case, with or without a model extension); each link says which matched, or
`unresolved`. Only files in repos the caller may read are candidates, and only images in
repos the caller may read are listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.domain.access import ANONYMOUS, Principal
from registry.domain.digest import Digest
from registry.domain.generation import Resource
from registry.domain.names import RepoId
from registry.domain.resources import (
    IMAGE_SUFFIXES,
    MODEL_EXTENSIONS,
    file_names,
    name_key,
    user_of,
    written_hashes,
)
from registry.metadata.commits import HashKind, RefFile
from registry.metadata.db import Database
from registry.metadata.images import Usage
from registry.metadata.tx import Tx
from registry.service.lookup import LookupService
from registry.service.reads import ReadService, Snapshot
from registry.service.repos import can_read

MAX_IMAGES = 500  # images listed for one revision
MAX_CANDIDATES = 20  # files offered for one resource
MAX_USED_BY = 500  # resources that name a file, looked at for one answer
_HEX = re.compile(r"[0-9a-f]{6,64}")


@dataclass(frozen=True)
class Candidate:
    repo: str  # namespace/name
    repo_type: str
    ref: str
    commit: str
    path: str
    blake3: str


@dataclass(frozen=True)
class Link:
    kind: str
    name: str
    hash: str | None
    weight: float | None
    match: str  # hash | name | unresolved
    candidates: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class RepoImage:
    path: str
    blake3: str
    state: str  # pending | read | none | refused
    problem: str | None = None
    generation: dict[str, object] | None = None
    resources: tuple[Link, ...] = ()


@dataclass(frozen=True)
class UsedBy:
    repo: str
    repo_type: str
    ref: str
    path: str
    blake3: str  # the image's (or workflow file's)
    kind: str
    name: str
    weight: float | None
    match: str  # hash | name
    what: str = "image"  # image | workflow (a ComfyUI workflow file)


class MadeWithService:
    def __init__(self, db: Database, reads: ReadService, lookup: LookupService) -> None:
        self._db = db
        self._reads = reads
        self._lookup = lookup

    def repo_images(self, principal: Principal, repo: RepoId, revision: str) -> list[RepoImage]:
        """The images of a revision (up to MAX_IMAGES, by path), with what they say and
        the files their resources resolve to.

        Raises:
            RepoNotFoundError, RevisionNotFoundError.
        """
        snap = self._reads.snapshot(principal, repo, revision)
        return self.images_at(principal, snap, MAX_IMAGES)

    def images_at(self, principal: Principal, snap: Snapshot, limit: int) -> list[RepoImage]:
        """The first `limit` images of a snapshot (by path), as `repo_images` tells them."""
        files = [f for f in self._reads.tree(snap.commit.id) if _is_image(f.path)][:limit]
        hexes = {f.entry.blake3.hex for f in files}
        with self._db.read() as tx:
            records, named = tx.images.of(hexes), tx.images.resources(hexes)
            resolve = _Resolver(tx, principal)
            resolve.prepare(r for rs in named.values() for r in rs)
            images = []
            for f in files:
                b3 = f.entry.blake3.hex
                record = records.get(b3)
                if record is None:
                    images.append(RepoImage(f.path, b3, "pending"))
                    continue
                links = tuple(resolve(r) for r in named.get(b3, ()))
                generation = json.loads(record.generation) if record.generation else None
                images.append(
                    RepoImage(f.path, b3, record.state, record.problem, generation, links)
                )
        return images

    def used_by(self, principal: Principal, text: str) -> list[UsedBy]:
        """The images and ComfyUI workflow files the caller may read whose resources resolve to
        a file with this hash (any form `LookupService.by_hash` takes), by hash or by its file
        name; by repo, path.

        Raises:
            InvalidError: not a hash.
        """
        files = self._lookup.by_hash(principal, text)
        if not files:
            return []
        targets = {f.blake3 for f in files}
        found: list[UsedBy] = []
        with self._db.read() as tx:
            made = tx.model_hashes.of({Digest(b3) for b3 in targets})
            hashes: set[str] = set()
            for f in files:
                tail = made.get(Digest(f.blake3))
                hashes |= written_hashes(f.sha256, tail.tail_sha256 if tail else None, f.autov1)
            keys = {name_key(f.path) for f in files}
            resolve = _Resolver(tx, principal)
            naming = tx.images.naming(hashes, keys, MAX_USED_BY)
            resolve.prepare(resource for _, resource in naming)
            for image, resource in naming:
                link = resolve(resource)
                if any(c.blake3 in targets for c in link.candidates):
                    found += _holders(tx, principal, image, link)
        return sorted(found, key=lambda u: (u.repo_type, u.repo, u.path, u.name))

    def workflows_at(self, snap: Snapshot) -> list[tuple[str, tuple[Link, ...]]]:
        """The snapshot's ComfyUI workflow files (read by the image job; up to MAX_IMAGES, by
        path), each with the models it needs resolved among public repos: the same answer
        for every caller, so it is cached with the rest of model_info."""
        files = [f for f in self._reads.tree(snap.commit.id) if user_of(f.path) == "workflow"]
        hexes = {f.entry.blake3.hex for f in files}
        if not hexes:
            return []
        with self._db.read() as tx:
            records, named = tx.images.of(hexes), tx.images.resources(hexes)
            flows = [
                f
                for f in files
                if (r := records.get(f.entry.blake3.hex))
                and r.kind == "workflow"
                and r.state == "read"
            ][:MAX_IMAGES]
            resolve = _Resolver(tx, ANONYMOUS)
            resolve.prepare(r for f in flows for r in named.get(f.entry.blake3.hex, ()))
            return [
                (f.path, tuple(resolve(r) for r in named.get(f.entry.blake3.hex, ())))
                for f in flows
            ]

    def usage(self, snap: Snapshot) -> Usage:
        """How many images of public repos used a model file of this snapshot (by a hash
        written for it, or by its name), and at what weights: one indexed query."""
        models = [
            f.entry
            for f in self._reads.tree(snap.commit.id)
            if f.path.lower().endswith(MODEL_EXTENSIONS)
        ]
        if not models:
            return Usage(0, None, None)
        with self._db.read() as tx:
            made = tx.model_hashes.of({e.blake3 for e in models})
            hashes: set[str] = set()
            for e in models:
                tail = made.get(e.blake3)
                hashes |= written_hashes(
                    e.sha256, tail.tail_sha256 if tail else None, tail.autov1 if tail else None
                )
            return tx.images.usage(hashes, {name_key(e.path) for e in models})


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


# The lookups a written hash of this many hex digits may be, tried in order.
_BY_LENGTH: dict[int, tuple[HashKind, ...]] = {
    64: ("either",),
    12: ("autov3", "sha256_prefix"),  # LoRAs: AutoV3; A1111's embedding hash: SHA-256[:12]
    10: ("sha256_prefix",),  # AutoV2
    8: ("autov1", "sha256_prefix"),
}


@dataclass
class _Resolver:
    """Resolves resources within one read transaction, remembering what it looked up. File
    names are not indexed (a lookup reads every path under a ref), so `prepare` resolves a
    whole answer's hashes first and then looks up, in one statement, the names of only the
    resources no hash resolved."""

    tx: Tx
    principal: Principal
    _seen: dict[tuple[str | None, str], tuple[str, tuple[Candidate, ...]]] = field(
        default_factory=dict
    )
    _by_name: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)

    def prepare(self, resources: Iterable[Resource]) -> None:
        left: set[str] = set()
        for r in resources:
            key = (r.hash, name_key(r.name))
            if key not in self._seen:
                hits = self._by_hash(r.hash)
                if hits:
                    self._seen[key] = ("hash", hits)
                else:
                    left.add(key[1])
        self._names(left)

    def __call__(self, r: Resource) -> Link:
        key = (r.hash, name_key(r.name))
        if key not in self._seen:
            self._seen[key] = self._find(*key)
        match, candidates = self._seen[key]
        return Link(r.kind, r.name, r.hash, r.weight, match, candidates)

    def _find(self, written: str | None, key: str) -> tuple[str, tuple[Candidate, ...]]:
        hits = self._by_hash(written)
        if hits:
            return "hash", hits
        self._names({key})
        hits = self._by_name.get(key, ())
        return ("name", hits) if hits else ("unresolved", ())

    def _by_hash(self, written: str | None) -> tuple[Candidate, ...]:
        if not written or not _HEX.fullmatch(written):
            return ()
        for kind in _BY_LENGTH.get(len(written), ("sha256_prefix",)):
            hits = self._visible(self.tx.commits.under_refs(written, kind, MAX_CANDIDATES))
            if hits:
                return hits
        return ()

    def _names(self, wanted: set[str]) -> None:
        keys = wanted - set(self._by_name) - {""}
        if not keys:
            return
        names = [n for key in keys for n in file_names(key)]
        found: dict[str, list[Candidate]] = {key: [] for key in keys}
        for hit in self._visible(self.tx.commits.named(names, MAX_CANDIDATES * len(keys))):
            group = found.get(name_key(hit.path))
            if group is not None and len(group) < MAX_CANDIDATES:
                group.append(hit)
        self._by_name.update({key: tuple(hits) for key, hits in found.items()})

    def _visible(self, hits: list[RefFile]) -> tuple[Candidate, ...]:
        return tuple(_candidate(h) for h in hits if can_read(self.principal, h.repo))


def _candidate(hit: RefFile) -> Candidate:
    rid = hit.repo.repo
    return Candidate(
        rid.full_name,
        rid.type.value,
        hit.ref.name,
        hit.ref.commit_id,
        hit.file.path,
        hit.file.entry.blake3.hex,
    )


def _holders(tx: Tx, principal: Principal, image: str, link: Link) -> list[UsedBy]:
    """Where the caller may see this image: one entry per repo and path."""
    found: dict[tuple[str, str], UsedBy] = {}
    for hit in tx.commits.under_refs(image, "blake3", MAX_CANDIDATES):
        rid = hit.repo.repo
        if not can_read(principal, hit.repo) or (rid.full_name, hit.file.path) in found:
            continue
        found[(rid.full_name, hit.file.path)] = UsedBy(
            rid.full_name,
            rid.type.value,
            hit.ref.name,
            hit.file.path,
            image,
            link.kind,
            link.name,
            link.weight,
            link.match,
            user_of(hit.file.path),
        )
    return list(found.values())
