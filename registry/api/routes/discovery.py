"""Native discovery routes: search (never hiding what the index has not caught up with) and
model metadata (read from a revision, set through the card)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from registry.api.deps import ModelMetadataDep, PrincipalDep, SearchDep
from registry.api.errors import documented
from registry.api.paths import parse_repo
from registry.domain.search import SORTS, SearchQuery
from registry.service.search import IndexLag, SearchHit
from registry.wire import (
    IndexLagOut,
    MetadataCommitOut,
    MetadataIn,
    ModelMetadataOut,
    SearchHitOut,
    SearchOut,
    iso_ms,
)

router = APIRouter(prefix="/v1", tags=["native"])


def lag_out(lag: IndexLag) -> IndexLagOut:
    return IndexLagOut(behind_entries=lag.behind_entries, **asdict(lag))


def hit_out(hit: SearchHit) -> SearchHitOut:
    doc = hit.doc
    return SearchHitOut(
        id=f"{doc.namespace}/{doc.name}" if doc.namespace else doc.name,
        type=doc.repo_type,
        author=doc.namespace,
        private=doc.private,
        kind=doc.kind,
        base_model=doc.base_model,
        license=doc.license,
        description=doc.description,
        tags=list(doc.tags),
        trigger_words=list(doc.trigger_words),
        suggested_tags=list(doc.suggested_tags),
        downloads=doc.downloads,
        lastModified=iso_ms(doc.updated_ms),
        createdAt=iso_ms(doc.created_ms),
        scan=hit.scan,
        indexed=hit.indexed,
        home=doc.home,
    )


@router.get("/search", responses=documented(401), response_model=SearchOut)
def search(
    search_service: SearchDep,
    principal: PrincipalDep,
    q: Annotated[str, Query(max_length=500)] = "",
    type: Annotated[str, Query(pattern="^(model|dataset)$")] = "model",
    kind: str | None = None,
    base_model: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    author: str | None = None,
    sort: Annotated[str, Query(pattern=f"^({'|'.join(SORTS)})$")] = "recent",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchOut:
    """Full text over names, descriptions, tags and trigger words, with filters and sorts.

    `index` says how far behind the index is; results are complete either way.
    """
    query = SearchQuery(type, q, kind, base_model, tuple(tag or ()), author, sort, offset, limit)
    page = search_service.search(principal, query)
    return SearchOut(
        results=[hit_out(h) for h in page.hits],
        index=lag_out(page.lag),
        next_offset=offset + len(page.hits) if page.more else None,
    )


@router.get("/search/status", response_model=IndexLagOut)
def search_status(search_service: SearchDep) -> IndexLagOut:
    """How far the search index is behind the change log."""
    return lag_out(search_service.lag())


@router.get(
    "/repos/{repo_type}/{namespace}/{name}/metadata",
    responses=documented(400, 401, 404),
    response_model=ModelMetadataOut,
)
def get_metadata(
    repo_type: str,
    namespace: str,
    name: str,
    metadata: ModelMetadataDep,
    principal: PrincipalDep,
    revision: str = "main",
) -> ModelMetadataOut:
    """Kind, base model, tags, trigger words, lineage, and what was read from the files."""
    repo = parse_repo(f"{repo_type}s", namespace, name)
    return ModelMetadataOut.model_validate(asdict(metadata.read(principal, repo, revision)))


@router.put(
    "/repos/{repo_type}/{namespace}/{name}/metadata",
    responses=documented(400, 401, 403, 404, 409, 412),
    response_model=MetadataCommitOut,
)
def put_metadata(
    repo_type: str,
    namespace: str,
    name: str,
    body: MetadataIn,
    metadata: ModelMetadataDep,
    principal: PrincipalDep,
) -> MetadataCommitOut:
    """Set card keys (null removes one) by a commit to main rewriting README.md's front matter."""
    repo = parse_repo(f"{repo_type}s", namespace, name)
    changes = body.model_dump(exclude_unset=True, exclude={"parent_commit"})
    sha, now = metadata.update(principal, repo, changes, parent_commit=body.parent_commit)
    return MetadataCommitOut(commit=sha, metadata=ModelMetadataOut.model_validate(asdict(now)))
