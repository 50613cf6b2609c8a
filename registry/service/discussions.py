"""Discussions and pull requests: open, comment, rename, close or reopen, merge; list and read.

Any signed-in user with a write token may open a discussion or a PR on a repo they can read,
and comment; the repo's writers (and a discussion's author, for their own) change its status
or title; only writers merge. Each event is one `discussion.event` change, written in the
transaction that makes it, so replicas show the same discussions. A PR's commits go to
`refs/pr/<num>` (`CommitService`), never to its target branch until it is merged.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace

from registry.domain.access import Principal, may_write, require_contributor, require_write
from registry.domain.changes import DiscussionChange
from registry.domain.clock import now_ms
from registry.domain.commit import TreeEntry
from registry.domain.discussions import (
    PAGE_SIZE,
    Discussion,
    Event,
    check_text,
    merge_trees,
    pr_ref,
    tree_diff,
)
from registry.domain.errors import (
    DiscussionNotFoundError,
    DiscussionStateError,
    ForbiddenError,
    InvalidError,
    MergeConflictError,
    RevisionNotFoundError,
)
from registry.domain.names import RepoId
from registry.domain.records import RepoRecord
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.service.repos import NewCommit, find_repo, move_ref, require_home, write_commit
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
OPEN = ("open", "draft")
DIFF_TEXT_BYTES = 256 * 1024  # larger files show as changed in a PR's diff, without lines


@dataclass(frozen=True)
class DiscussionPage:
    discussions: list[Discussion]
    total: int
    start: int


@dataclass(frozen=True)
class DiscussionDetails:
    discussion: Discussion
    events: list[Event]
    conflicts: list[str]  # a PR's files changed on its target too (open PRs only)
    diff: str | None  # a PR's changes, from its base to its ref


def pr_number(revision: str) -> int | None:
    """N for `refs/pr/N`, else None."""
    number = revision.removeprefix("refs/pr/")
    return int(number) if number != revision and number.isdigit() else None


def pr_repo(tx: Tx, principal: Principal, repo: RepoId, node: NodeIdentity) -> RepoRecord:
    """The repo, if the principal may propose changes to it and this node is its home."""
    found = find_repo(tx, principal, repo)
    require_contributor(principal)
    require_home(tx, found, node)
    return found


def pr_target(tx: Tx, repo: RepoRecord, branch: str) -> str:
    """The ref of the branch a new PR targets; RevisionNotFound if there is none."""
    ref = branch if branch.startswith("refs/heads/") else f"refs/heads/{branch}"
    if tx.refs.get(repo.id, ref) is None:
        raise RevisionNotFoundError(f"Invalid rev id: {branch} (a PR targets a branch)")
    return ref


def open_discussion(
    tx: Tx,
    node: NodeIdentity,
    repo: RepoRecord,
    author: str,
    title: str,
    description: str,
    *,
    pr: tuple[str, str, str] | None = None,
) -> Discussion:
    """A new discussion, or with `pr` = (status, target ref, base commit) a PR whose ref
    points at the base until its first commit."""
    title = check_text(title, "title").strip()
    check_text(description, "description")
    if not title:
        raise InvalidError("A discussion needs a title")
    num = tx.repos.next_pr(repo.id)
    d = Discussion(num, title, author, "open", False, now_ms())
    if pr is not None:
        status, target, base = pr
        d = replace(d, status=status, pull_request=True, target=target, base=base)
        if status == "draft":
            move_ref(tx, node, repo, d.ref, base)
    _log(tx, node, repo, d, _event("comment", author, {"text": description}))
    return d


def pr_commit(
    tx: Tx, node: NodeIdentity, repo: RepoRecord, d: Discussion, author: str, title: str, sha: str
) -> None:
    """A commit landed on the PR's ref: a draft PR is open from now on."""
    opened = replace(d, status="open")
    _log(tx, node, repo, opened, _event("commit", author, {"subject": title, "oid": sha}))


def committable_pr(tx: Tx, principal: Principal, repo: RepoRecord, num: int) -> Discussion | None:
    """The open PR `num` if the principal may commit to it (its author or a writer); None if
    the repo has a refs/pr/<num> ref without a PR (made before PRs were kept)."""
    d = tx.discussions.get(repo.id, num)
    if d is None or not d.pull_request:
        return None
    if not may_write(principal, repo.repo.namespace) and principal.user != d.author:
        raise ForbiddenError(f"Only the author of PR #{num} or the repo's writers push to it")
    if d.status not in OPEN:
        raise DiscussionStateError(f"PR #{num} is {d.status}")
    return d


class DiscussionService:
    def __init__(self, db: Database, node: NodeIdentity, blobs: BlobStore) -> None:
        self._db = db
        self._node = node
        self._blobs = blobs

    def page(
        self,
        principal: Principal,
        repo: RepoId,
        *,
        page: int,
        author: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> DiscussionPage:
        """`kind`: all, discussion or pull_request; `status`: all, open or closed (closed
        includes merged), as the Hub client filters."""
        if page < 0:
            raise InvalidError("The page number is 0 or more")
        pulls = {"discussion": False, "pull_request": True}.get(kind or "all")
        with self._db.read() as tx:
            found = find_repo(tx, principal, repo)
            start = page * PAGE_SIZE
            statuses = {"open": ("open", "draft"), "closed": ("closed", "merged")}
            items, total = tx.discussions.page(
                found.id,
                author=author,
                pull_request=pulls,
                statuses=statuses.get(status or "all"),
                start=start,
                limit=PAGE_SIZE,
            )
        return DiscussionPage(items, total, start)

    def details(self, principal: Principal, repo: RepoId, num: int) -> DiscussionDetails:
        with self._db.read() as tx:
            found = find_repo(tx, principal, repo)
            d = _get(tx, found, num)
            events = tx.discussions.events(found.id, num)
            conflicts = _conflicts(tx, found, d) if d.pull_request and d.status in OPEN else []
            head = tx.refs.get(found.id, d.ref) if d.pull_request else None
            trees = None if head is None else (_tree(tx, d.base), _tree(tx, head.commit_id))
        diff = None if trees is None else tree_diff(*trees, self._text)
        return DiscussionDetails(d, events, conflicts, diff)

    def _text(self, entry: TreeEntry) -> str | None:
        """A small regular file's text, for a diff; None for others (or bytes not held)."""
        if entry.lfs or entry.size > DIFF_TEXT_BYTES or self._blobs.stat(entry.blake3) is None:
            return None
        try:
            return b"".join(self._blobs.open(entry.blake3)).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def create(
        self, principal: Principal, repo: RepoId, title: str, description: str, pull_request: bool
    ) -> Discussion:
        """A discussion, or a draft PR on the main branch (open once a commit lands on it)."""
        with self._db.write() as tx:
            found = pr_repo(tx, principal, repo, self._node)
            pr = None
            if pull_request:
                target = pr_target(tx, found, "main")
                head = tx.refs.get(found.id, target)
                assert head is not None
                pr = ("draft", target, head.commit_id)
            d = open_discussion(
                tx, self._node, found, principal.user or "", title, description, pr=pr
            )
        logger.info("discussion opened repo=%s num=%d pr=%s", repo, d.num, pull_request)
        return d

    def comment(self, principal: Principal, repo: RepoId, num: int, text: str) -> Event:
        if not check_text(text, "comment").strip():
            raise InvalidError("A comment needs some text")
        with self._db.write() as tx:
            found = pr_repo(tx, principal, repo, self._node)
            d = _get(tx, found, num)
            event = _event("comment", principal.user or "", {"text": text})
            _log(tx, self._node, found, d, event)
        return event

    def edit_comment(
        self, principal: Principal, repo: RepoId, num: int, comment_id: str, text: str
    ) -> Event:
        check_text(text, "comment")
        with self._db.write() as tx:
            found = pr_repo(tx, principal, repo, self._node)
            d = _get(tx, found, num)
            old = tx.discussions.event(found.id, num, comment_id)
            if old is None or old.type != "comment":
                raise DiscussionNotFoundError(f"No comment {comment_id} in discussion #{num}")
            if old.author != principal.user and not principal.is_admin:
                raise ForbiddenError("Only a comment's author edits it")
            event = replace(old, data={"text": text}, edited_ms=now_ms())
            _log(tx, self._node, found, d, event)
        return event

    def rename(self, principal: Principal, repo: RepoId, num: int, title: str) -> Event:
        if not check_text(title, "title").strip():
            raise InvalidError("A discussion needs a title")
        with self._db.write() as tx:
            found, d = self._own(tx, principal, repo, num)
            event = _event("title-change", principal.user or "", {"from": d.title, "to": title})
            _log(tx, self._node, found, replace(d, title=title.strip()), event)
        return event

    def set_status(
        self, principal: Principal, repo: RepoId, num: int, status: str, comment: str | None
    ) -> Event:
        if status not in ("open", "closed"):
            raise InvalidError("A discussion's status is set to open or closed")
        check_text(comment or "", "comment")
        with self._db.write() as tx:
            found, d = self._own(tx, principal, repo, num)
            if d.status == "merged":
                raise DiscussionStateError(f"PR #{num} is merged")
            author = principal.user or ""
            if comment:
                _log(tx, self._node, found, d, _event("comment", author, {"text": comment}))
            new = status if status == "closed" or not d.pull_request else "open"
            event = _event("status-change", author, {"status": new})
            _log(tx, self._node, found, replace(d, status=new), event)
        return event

    def merge(self, principal: Principal, repo: RepoId, num: int, comment: str | None) -> str:
        """Apply the PR's changes to its target branch in one new commit; its id."""
        check_text(comment or "", "comment")
        with self._db.write() as tx:
            found = find_repo(tx, principal, repo)
            require_write(principal, found.repo.namespace)
            require_home(tx, found, self._node)
            d = _get(tx, found, num)
            if not d.pull_request:
                raise DiscussionStateError(f"Discussion #{num} is not a pull request")
            if d.status not in OPEN:
                raise DiscussionStateError(f"PR #{num} is {d.status}")
            target, head = _heads(tx, found, d)
            current = _tree(tx, target)
            merged = merge_trees(_tree(tx, d.base), current, _tree(tx, head))
            if not merged.conflicts and merged.tree == current:
                raise DiscussionStateError(f"PR #{num} changes nothing on {d.target}")
            if merged.conflicts:
                raise MergeConflictError(
                    f"PR #{num} cannot be merged: {', '.join(merged.conflicts)} changed on "
                    f"{d.target} too since the PR was opened",
                    detail={"conflicts": merged.conflicts},
                )
            author = principal.user or ""
            last = {f.path: f.last_commit for f in tx.commits.tree(target)}  # unchanged paths
            new = NewCommit(
                target,
                author,
                d.title,
                f"Merged pull request #{num}",
                list(merged.tree.values()),
                merged.changed,
                last,
            )
            assert d.target is not None
            sha = write_commit(tx, self._node, found, new, d.target)
            if comment:
                _log(tx, self._node, found, d, _event("comment", author, {"text": comment}))
            done = replace(d, status="merged", merge_commit=sha)
            _log(tx, self._node, found, done, _event("status-change", author, {"status": "merged"}))
        logger.info("PR merged repo=%s num=%d commit=%s", repo, num, sha)
        return sha

    def _own(
        self, tx: Tx, principal: Principal, repo: RepoId, num: int
    ) -> tuple[RepoRecord, Discussion]:
        """The repo and discussion, if the principal is a writer or the discussion's author."""
        found = pr_repo(tx, principal, repo, self._node)
        d = _get(tx, found, num)
        if not may_write(principal, found.repo.namespace) and principal.user != d.author:
            raise ForbiddenError(f"Only the repo's writers or its author change #{num}")
        return found, d


def _get(tx: Tx, repo: RepoRecord, num: int) -> Discussion:
    d = tx.discussions.get(repo.id, num)
    if d is None:
        raise DiscussionNotFoundError(f"Discussion #{num} not found in {repo.repo.full_name}")
    return d


def _heads(tx: Tx, repo: RepoRecord, d: Discussion) -> tuple[str, str]:
    """The commits the PR's target branch and its ref point at."""
    target = tx.refs.get(repo.id, d.target or "")
    head = tx.refs.get(repo.id, pr_ref(d.num))
    if target is None or head is None:
        raise RevisionNotFoundError(f"The branch {d.target} of PR #{d.num} is gone")
    return target.commit_id, head.commit_id


def _conflicts(tx: Tx, repo: RepoRecord, d: Discussion) -> list[str]:
    try:
        target, head = _heads(tx, repo, d)
    except RevisionNotFoundError:
        return []
    return merge_trees(_tree(tx, d.base), _tree(tx, target), _tree(tx, head)).conflicts


def _tree(tx: Tx, commit: str | None) -> dict[str, TreeEntry]:
    return {f.path: f.entry for f in tx.commits.tree(commit or "")}


def _event(kind: str, author: str, data: dict[str, str]) -> Event:
    return Event(secrets.token_hex(12), kind, author, now_ms(), data)


def _log(tx: Tx, node: NodeIdentity, repo: RepoRecord, d: Discussion, event: Event) -> None:
    """Keep the discussion as it now stands and the event, and log both for peers."""
    tx.discussions.put(repo.id, d)
    tx.discussions.put_event(repo.id, d.num, event)
    tx.changes.append(node.node_id, repo, DiscussionChange(repo.incarnation, d, event))
