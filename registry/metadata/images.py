"""What image blobs say made them (state, generation JSON, the model files they name), which
image blobs are still to be read, and which images name given hashes or file names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, func, or_
from sqlmodel import Session, col, select

from registry.domain.digest import Digest
from registry.domain.generation import Resource
from registry.domain.resources import IMAGE_SUFFIXES, WORKFLOW_SUFFIXES, name_key
from registry.metadata.blobs import unread_named
from registry.metadata.tables import (
    ImageRecord,
    ImageResource,
    Ref,
    Repo,
    TreeRow,
)


@dataclass(frozen=True)
class StoredImage:
    state: str  # read | none | refused
    problem: str | None
    generation: str | None  # JSON
    kind: str = "image"  # image | workflow


@dataclass(frozen=True)
class Usage:
    images: int
    low: float | None  # the lowest and highest weight written, if any
    high: float | None


class Images:
    def __init__(self, session: Session) -> None:
        self._session = session

    def pending(self, limit: int) -> list[Digest]:
        """Up to `limit` stored blobs some tree names as an image or workflow, not read yet."""
        return unread_named(self._session, IMAGE_SUFFIXES + WORKFLOW_SUFFIXES, ImageRecord, limit)

    def record(
        self,
        digest: Digest,
        state: str,
        problem: str | None,
        generation: str | None,
        resources: Sequence[Resource],
        at_ms: int,
        kind: str = "image",
    ) -> None:
        """Record what an image (or a workflow file: `kind`) says; the first row stays (the
        same bytes say the same)."""
        if self._session.get(ImageRecord, digest.hex) is not None:
            return
        self._session.add(
            ImageRecord(
                blake3=digest.hex,
                state=state,
                problem=problem,
                generation=generation,
                read_ms=at_ms,
                kind=kind,
            )
        )
        for position, r in enumerate(resources):
            self._session.add(
                ImageResource(
                    image=digest.hex,
                    position=position,
                    kind=r.kind,
                    name=r.name,
                    name_key=name_key(r.name),
                    hash=r.hash.lower() if r.hash else None,
                    weight=r.weight,
                )
            )

    def of(self, digests: Iterable[str]) -> dict[str, StoredImage]:
        """The records of those of these image blobs (BLAKE3 hex) that were read."""
        rows = self._session.exec(
            select(ImageRecord).where(col(ImageRecord.blake3).in_(set(digests)))
        ).all()
        return {r.blake3: StoredImage(r.state, r.problem, r.generation, r.kind) for r in rows}

    def resources(self, digests: Iterable[str]) -> dict[str, list[Resource]]:
        """The model files each of these images names, in the order written."""
        rows = self._session.exec(
            select(ImageResource)
            .where(col(ImageResource.image).in_(set(digests)))
            .order_by(col(ImageResource.image), col(ImageResource.position))
        ).all()
        found: dict[str, list[Resource]] = {}
        for r in rows:
            found.setdefault(r.image, []).append(Resource(r.kind, r.name, r.hash, r.weight))
        return found

    def naming(
        self, hashes: Iterable[str], keys: Iterable[str], limit: int
    ) -> list[tuple[str, Resource]]:
        """(image BLAKE3, resource) for resources written with one of these hashes or name
        keys (both indexed)."""
        rows = self._session.exec(
            select(ImageResource)
            .where(_naming(hashes, keys))
            .order_by(col(ImageResource.image), col(ImageResource.position))
            .limit(limit)
        ).all()
        return [(r.image, Resource(r.kind, r.name, r.hash, r.weight)) for r in rows]

    def usage(self, hashes: Iterable[str], keys: Iterable[str]) -> Usage:
        """How many images (not workflows) of public repos (under a ref) name these hashes or
        name keys, and the weights written: one statement on the indexed columns."""
        public_image = (
            exists()
            .where(col(TreeRow.blake3) == col(ImageResource.image))
            .where(col(Ref.commit_id) == col(TreeRow.commit_id))
            .where(col(Repo.id) == col(Ref.repo_id), col(Repo.private).is_(False))
        )
        an_image = (
            exists()
            .where(col(ImageRecord.blake3) == col(ImageResource.image))
            .where(col(ImageRecord.kind) == "image")
        )
        count, low, high = self._session.execute(
            select(
                func.count(func.distinct(ImageResource.image)),
                func.min(ImageResource.weight),
                func.max(ImageResource.weight),
            ).where(_naming(hashes, keys), public_image, an_image)
        ).one()
        return Usage(int(count), low, high)


def _naming(hashes: Iterable[str], keys: Iterable[str]) -> ColumnElement[bool]:
    return or_(col(ImageResource.hash).in_(set(hashes)), col(ImageResource.name_key).in_(set(keys)))
