"""Discussions and pull requests of a repo, their events, and how a PR's files merge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from registry.domain.commit import TreeEntry
from registry.domain.errors import InvalidError

STATUSES = ("open", "closed", "merged", "draft")
EVENT_TYPES = ("comment", "status-change", "commit", "title-change")
PAGE_SIZE = 50  # discussions per page of a listing, as on the Hub


@dataclass(frozen=True)
class Discussion:
    """A discussion or, with `pull_request`, a PR whose commits go to `refs/pr/<num>`."""

    num: int
    title: str
    author: str
    status: str  # one of STATUSES
    pull_request: bool
    created_ms: int
    target: str | None = None  # a PR's branch ref, refs/heads/<branch>
    base: str | None = None  # the target's head when the PR was opened
    merge_commit: str | None = None

    @property
    def ref(self) -> str:
        return pr_ref(self.num)


@dataclass(frozen=True)
class Event:
    """One event of a discussion; `data` by type: comment {text}, status-change {status},
    commit {subject, oid}, title-change {from, to}."""

    id: str  # 24 hex digits, as the Hub's ids
    type: str  # one of EVENT_TYPES
    author: str
    created_ms: int
    data: Mapping[str, str]
    edited_ms: int | None = None  # a comment's last edit


def check_text(value: str, what: str) -> str:
    """`value` if it can be stored (UTF-8: no lone surrogates), else InvalidError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidError(f"The {what} is not valid Unicode text") from None
    return value


def pr_ref(num: int) -> str:
    return f"refs/pr/{num}"


@dataclass(frozen=True)
class Merge:
    """The target's tree with a PR's changes applied, or the paths that conflict."""

    tree: dict[str, TreeEntry]
    changed: set[str]
    conflicts: list[str]


def merge_trees(
    base: Mapping[str, TreeEntry], target: Mapping[str, TreeEntry], pr: Mapping[str, TreeEntry]
) -> Merge:
    """Apply what the PR changed since `base` to `target`: a path changed by both, to
    different contents, is a conflict."""
    tree = dict(target)
    changed: set[str] = set()
    conflicts = []
    for path in sorted(base.keys() | pr.keys()):
        theirs, ours, was = pr.get(path), target.get(path), base.get(path)
        if _same(theirs, was) or _same(theirs, ours):
            continue
        if not _same(ours, was):
            conflicts.append(path)
        elif theirs is None:
            del tree[path]
        else:
            tree[path] = theirs
            changed.add(path)
    return Merge(tree, changed, conflicts)


def _same(a: TreeEntry | None, b: TreeEntry | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.blake3, a.lfs) == (b.blake3, b.lfs)
