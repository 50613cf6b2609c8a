"""Model metadata: read from a revision's card and files, and set through the card.

The card's front matter (README.md, as on the Hub) is the one place metadata lives, so the
native endpoint that sets it makes a commit rewriting that front matter: history, replication
and mirrors then carry it like any other change, and no second copy can disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.domain.access import Principal
from registry.domain.errors import InvalidError
from registry.domain.names import RepoId
from registry.domain.search import KINDS
from registry.service.cards import Card, parse_card, rewrite_card
from registry.service.commits import AddBytes, CommitService
from registry.service.lineage import Parent, declared_parents
from registry.service.reads import ReadService, Snapshot
from registry.service.scanning import ScanService


@dataclass(frozen=True)
class ModelMetadata:
    kind: str | None
    base_model: str | None
    license: str | None
    description: str
    tags: list[str]
    trigger_words: list[str]
    lineage: list[Parent]
    suggested_tags: list[str] = field(default_factory=list)
    training: dict[str, str] = field(default_factory=dict)
    scan: str | None = None


def validate_changes(changes: dict[str, object]) -> dict[str, object]:
    """Front-matter keys from a request: a known kind, and lineage entries with a parent."""
    kind = changes.get("kind")
    if isinstance(kind, str) and kind.strip().lower() not in KINDS:
        raise InvalidError(
            f"Unknown kind {kind!r}: use one of {', '.join(KINDS)}", detail={"kinds": KINDS}
        )
    lineage = changes.get("lineage")
    if isinstance(lineage, list):
        entries = [{k: v for k, v in item.items() if v is not None} for item in lineage]
        if not all(e.get("repo") or e.get("hash") for e in entries):
            raise InvalidError("Each lineage entry names a parent: `repo` or `hash`")
        changes = {**changes, "lineage": entries}
    return changes


class ModelMetadataService:
    def __init__(self, reads: ReadService, commits: CommitService, scans: ScanService) -> None:
        self._reads = reads
        self._commits = commits
        self._scans = scans

    def describe(self, snap: Snapshot) -> ModelMetadata:
        commit = snap.commit.id
        card: Card = self._reads.card(commit)
        weights = self._reads.weights(commit)
        return ModelMetadata(
            kind=card.kind,
            base_model=card.base_model,
            license=card.license,
            description=card.description,
            tags=[str(t) for t in card.data.get("tags") or [] if isinstance(t, str | int)],
            trigger_words=card.trigger_words,
            lineage=declared_parents(card),
            suggested_tags=weights.suggested_tags if weights else [],
            training=weights.training if weights else {},
            scan=self._scans.worst(self._reads.tree_map(commit)),
        )

    def read(self, principal: Principal, repo: RepoId, revision: str) -> ModelMetadata:
        """The metadata of a repo at a revision."""
        return self.describe(self._reads.snapshot(principal, repo, revision))

    def update(
        self,
        principal: Principal,
        repo: RepoId,
        changes: dict[str, object],
        *,
        parent_commit: str | None,
    ) -> tuple[str, ModelMetadata]:
        """Commit `changes` into main's README.md front matter (the body is kept).

        Returns:
            The new commit's id and the metadata it holds; main's head and its metadata when
            nothing would change (no empty commit is made).
        """
        snap = self._reads.snapshot(principal, repo, "main")
        before = self._reads.card_text(snap.commit.id)
        updated = rewrite_card(before, validate_changes(changes))
        if parse_card(updated).data == parse_card(before).data:  # nothing changes: no commit
            self._commits.require_writable(principal, repo, "main")
            return snap.commit.id, self.describe(snap)
        result = self._commits.commit(
            principal,
            repo,
            "main",
            title="Update model metadata",
            message=f"Set {', '.join(sorted(changes))} in the model card",
            operations=[AddBytes("README.md", updated.encode())],
            parent_commit=parent_commit or snap.commit.id,
        )
        return result.sha, self.read(principal, repo, result.sha)
