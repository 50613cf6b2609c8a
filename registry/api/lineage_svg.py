"""A repo's lineage laid out for inline SVG (drawn by templates/_lineage.html): its parents in
the left column, the repo in the middle, its children on the right, each a box linking to the
repo's page when the viewer may open it. Laid out by the node, so the graph needs no script
and nothing from another site; names are only ever written as escaped text."""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.names import RepoId
from registry.service.family import Family, Relative

BOX_W, BOX_H, GAP, COLUMN = 230, 40, 12, 300
WIDTH = 2 * COLUMN + BOX_W
MAX_LABEL = 30


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    label: str  # shortened to fit the box
    title: str  # the whole name, shown on hover and read by screen readers
    href: str | None
    note: str = ""
    current: bool = False


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    boxes: list[Box]
    edges: list[Edge]
    box_width: int = BOX_W
    box_height: int = BOX_H


def layout(repo: RepoId, family: Family) -> Graph:
    rows = max(len(family.parents), len(family.children), 1)
    height = rows * (BOX_H + GAP) + GAP
    name = repo.full_name
    middle = Box(COLUMN, (height - BOX_H) // 2, _short(name), name, _href(repo), current=True)
    parents = _column(family.parents, 0, height)
    children = _column(family.children, 2 * COLUMN, height)
    centre = middle.y + BOX_H // 2
    edges = [Edge(p.x + BOX_W, p.y + BOX_H // 2, middle.x, centre) for p in parents]
    edges += [Edge(middle.x + BOX_W, centre, c.x, c.y + BOX_H // 2) for c in children]
    return Graph(WIDTH, height, [*parents, middle, *children], edges)


def _column(relatives: list[Relative], x: int, height: int) -> list[Box]:
    """Boxes stacked in one column, centred vertically."""
    top = (height - len(relatives) * (BOX_H + GAP) + GAP) // 2
    return [
        Box(
            x,
            top + i * (BOX_H + GAP),
            _short(r.label),
            r.label,
            _href(r.repo) if r.repo else None,
            r.note,
        )
        for i, r in enumerate(relatives)
    ]


def _href(repo: RepoId) -> str:
    return f"/{repo.type.url_prefix}{repo.full_name}"  # validated names: nothing to quote


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"
