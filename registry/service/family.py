"""A repo's nearest relatives for its page: the parents its card declares and the children
that declare it, each bounded and found by indexed reads.

The full lineage graph (`LineageService.lineage`) reads every card of the node; a page cannot
afford that on a node of 100 000 repos. Parents come from this repo's own card (a hash parent
is resolved through the file lookup); children come from the search index, where each repo
carries a `parent:<ns/name>` tag per declared parent repo and a `parent-hash:<hex>` tag per
declared parent file (`indexer.parent_tags`), so repos not indexed yet are found too. A
child naming one of this repo's model files by BLAKE3, SHA-256 or AutoV2 is found by one
query over those tags, with the repo's own. Only repos the viewer may read are linked or
listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.commit import TreeEntry
from registry.domain.errors import InvalidError, NotFoundError
from registry.domain.names import RepoId, RepoType
from registry.domain.search import SearchQuery
from registry.service.indexer import parent_hash_tag, parent_tag
from registry.service.lineage import Parent
from registry.service.lookup import LookupService, autov2
from registry.service.reads import ReadService
from registry.service.search import SearchService

MAX_PARENTS = 12
MAX_HASH_REPOS = 4  # repos shown for one hash parent (the same file may be in many)
MAX_CHILDREN = 24
MAX_HASHED_FILES = 16  # the largest model files whose hashes children are looked up by


@dataclass(frozen=True)
class Relative:
    """One box of the graph: a repo (linked when the viewer may read it here) or a parent
    named by a file hash that no visible repo holds."""

    label: str
    repo: RepoId | None  # None: not a repo the viewer can open on this node
    note: str = ""  # how a parent was used: "merge 0.6", "base_model"


@dataclass(frozen=True)
class Family:
    parents: list[Relative]
    children: list[Relative]
    more_children: bool  # there are more than MAX_CHILDREN

    @property
    def empty(self) -> bool:
        return not self.parents and not self.children


class FamilyService:
    def __init__(self, reads: ReadService, lookup: LookupService, search: SearchService) -> None:
        self._reads = reads
        self._lookup = lookup
        self._search = search

    def of(
        self,
        principal: Principal,
        repo: RepoId,
        declared: list[Parent],
        models: Sequence[TreeEntry] = (),
    ) -> Family:
        """Parents (from `declared`, the repo's card) and children of `repo`: repos naming it,
        or naming one of `models` (its model files) by hash."""
        parents: dict[str, Relative] = {}  # by label: a card may name one parent twice
        for parent in declared[:MAX_PARENTS]:
            for relative in self._parent(principal, repo.type, parent):
                parents.setdefault(relative.label, relative)
        children, more = self._children(principal, repo, models)
        return Family(list(parents.values()), children, more)

    def _parent(self, principal: Principal, kind: RepoType, parent: Parent) -> list[Relative]:
        note = " ".join(x for x in (parent.method, _ratio(parent.ratio)) if x)
        if parent.repo:
            return [Relative(parent.repo, self._visible(principal, kind, parent.repo), note)]
        if not parent.hash:
            return []
        try:
            hits = self._lookup.by_hash(principal, parent.hash, limit=50)
        except InvalidError:
            hits = []
        names = list(dict.fromkeys(h.repo for h in hits if h.repo_type == kind.value))
        found = [self._visible(principal, kind, n) for n in names[:MAX_HASH_REPOS]]
        relatives = [Relative(r.full_name, r, note) for r in found if r is not None]
        return relatives or [Relative(f"file {parent.hash[:16]}", None, note)]

    def _visible(self, principal: Principal, kind: RepoType, name: str) -> RepoId | None:
        """The repo `name` names, if it is here and the viewer may read it."""
        namespace, _, rest = name.partition("/")
        try:
            repo = RepoId.parse(kind, namespace, rest)
            self._reads.snapshot(principal, repo, "main")
        except (InvalidError, NotFoundError):
            return None
        return repo

    def _children(
        self, principal: Principal, repo: RepoId, models: Sequence[TreeEntry]
    ) -> tuple[list[Relative], bool]:
        tags = [parent_tag(repo.full_name)]
        largest = sorted(models, key=lambda e: e.size, reverse=True)[:MAX_HASHED_FILES]
        for entry in largest:
            for value in (entry.blake3.hex, entry.sha256, autov2(entry.sha256)):
                tag = parent_hash_tag(value)
                if tag:
                    tags.append(tag)
        any_tags = tuple(dict.fromkeys(tags))
        query = SearchQuery(repo.type.value, any_tags=any_tags, limit=MAX_CHILDREN)
        page = self._search.search(principal, query)
        children = []
        for hit in page.hits:
            child = RepoId(repo.type, hit.doc.namespace, hit.doc.name)
            if child != repo:
                children.append(Relative(child.full_name, child))
        return children, page.more


def _ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:g}"
