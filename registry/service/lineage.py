"""Lineage: the parents a model declares in its card (merges, fine-tunes, LoRAs), both ways.

A card names parents in `lineage:` (a list of `{repo: "ns/name[@rev]" | hash: <hash>,
method, ratio}`) or, Hub style, in `base_model:` ("ns/name" or a list of them). A hash parent
is resolved to the repos holding that file. The graph is built from the main branch of every
repo the caller may see, so private repos never show up for others.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.names import RepoId, RepoType
from registry.service.cards import Card
from registry.service.lookup import LookupService
from registry.service.reads import ReadService
from registry.service.repos import RepoService

MAX_DEPTH = 16


@dataclass(frozen=True)
class Parent:
    repo: str | None  # ns/name
    revision: str | None
    hash: str | None
    method: str | None
    ratio: float | None


@dataclass(frozen=True)
class Relative:
    repo: str
    depth: int  # 1 = parent or child


@dataclass(frozen=True)
class Lineage:
    repo: str
    parents: list[Parent]
    ancestors: list[Relative]
    descendants: list[Relative]


def declared_parents(card: Card) -> list[Parent]:
    parents = []
    for item in card.data.get("lineage") or []:
        if isinstance(item, dict):
            repo, _, revision = str(item.get("repo") or "").partition("@")
            ratio = item.get("ratio")
            parents.append(
                Parent(
                    repo or None,
                    revision or None,
                    str(item["hash"]) if item.get("hash") else None,
                    str(item["method"]) if item.get("method") else None,
                    float(ratio) if isinstance(ratio, int | float) else None,
                )
            )
    base = card.data.get("base_model")
    for name in base if isinstance(base, list) else [base]:
        if isinstance(name, str) and name.count("/") == 1:
            parents.append(Parent(name, None, None, "base_model", None))
    return parents


class LineageService:
    def __init__(self, repos: RepoService, reads: ReadService, lookup: LookupService) -> None:
        self._repos = repos
        self._reads = reads
        self._lookup = lookup

    def lineage(self, principal: Principal, repo: RepoId) -> Lineage:
        self._repos.get(principal, repo)  # RepoNotFound for the invisible
        graph = self._graph(principal, repo.type)
        children: dict[str, set[str]] = {}
        for child, parents in graph.items():
            for parent in parents:
                children.setdefault(parent, set()).add(child)
        up = {name: set(parents) for name, parents in graph.items()}
        card = self._card(principal, repo)
        return Lineage(
            repo.full_name,
            declared_parents(card),
            _walk(repo.full_name, up),
            _walk(repo.full_name, children),
        )

    def _card(self, principal: Principal, repo: RepoId) -> Card:
        snap = self._reads.snapshot(principal, repo, "main")
        return self._reads.card(snap.commit.id)

    def _graph(self, principal: Principal, kind: RepoType) -> dict[str, set[str]]:
        """name -> names of its parents, over every repo of this type the caller sees."""
        rows = self._repos.visible(principal, kind)
        visible = {r.repo.full_name for r in rows}
        graph: dict[str, set[str]] = {}
        for row in rows:
            rid = row.repo
            names = set()
            for parent in declared_parents(self._card(principal, rid)):
                if parent.repo:
                    names.add(parent.repo)
                elif parent.hash:
                    names |= {
                        h.repo
                        for h in self._lookup.by_hash(principal, parent.hash)
                        if h.repo_type == kind.value
                    }
            graph[rid.full_name] = {n for n in names if n in visible and n != rid.full_name}
        return graph


def _walk(start: str, edges: dict[str, set[str]]) -> list[Relative]:
    """Breadth-first, depth-bounded and cycle-safe."""
    seen, found = {start}, []
    queue = deque([(start, 0)])
    while queue:
        name, depth = queue.popleft()
        if depth >= MAX_DEPTH:
            continue
        for nxt in sorted(edges.get(name, ())):
            if nxt not in seen:
                seen.add(nxt)
                found.append(Relative(nxt, depth + 1))
                queue.append((nxt, depth + 1))
    return found
