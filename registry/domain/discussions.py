"""Discussions and pull requests of a repo, their events, and how a PR's files merge."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
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


def tree_diff(
    base: Mapping[str, TreeEntry],
    head: Mapping[str, TreeEntry],
    text_of: Callable[[TreeEntry], str | None],
) -> str:
    """A git-style diff from `base` to `head`: unified for text files (`text_of` gives a
    file's text, None for a binary or large one), one line for the others."""
    parts: list[str] = []
    for path in sorted(base.keys() | head.keys()):
        old, new = base.get(path), head.get(path)
        if _same(old, new):
            continue
        parts.append(f"diff --git a/{path} b/{path}\n")
        if old is None:
            parts.append("new file\n")
        elif new is None:
            parts.append("deleted file\n")
        texts = [None if e is None else text_of(e) for e in (old, new)]
        if (old is not None and texts[0] is None) or (new is not None and texts[1] is None):
            parts.append(f"Binary files a/{path} and b/{path} differ\n")
            continue
        before, after = ((t or "").splitlines(keepends=True) for t in texts)
        lines = difflib.unified_diff(
            before,
            after,
            "/dev/null" if old is None else f"a/{path}",
            "/dev/null" if new is None else f"b/{path}",
        )
        parts.extend(line if line.endswith("\n") else line + "\n" for line in lines)
    return "".join(parts)
