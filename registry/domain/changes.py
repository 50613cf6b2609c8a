"""The change log's entries: one class per kind of change, with the body it is written as.

Theory of operation: every metadata change a node makes appends one entry to its change log
(`registry.metadata.changelog`), in the transaction of the change. The entry's body is a JSON
object; the classes below are the only code that writes or reads one. A body is kept and
served exactly as it was written, and a node decodes it only where it acts on it (replication,
the mirror pusher). Nothing re-encodes a body it received: a kind, or a field, that a later
version adds passes through this version unchanged (recorded and re-served as it came), so
nodes of different versions replicate with each other. The wire form of each kind is held byte
for byte by tests/integration/test_feed_golden.py.

Adding a kind: a frozen dataclass here with `KIND`, its fields, `body()` and `from_body()`,
added to `Change` and `_DECODERS`; the service that makes the change appends it; then decide
what a replica does with it (`sync/planner.py`, `registry.service.replication`) and what a
mirror does (`mirror/outbox.py`, `registry.metadata.changelog.MIRRORED`). docs/architecture.md
walks through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from registry.domain.commit import TreeEntry
from registry.domain.digest import Digest, is_sha256
from registry.domain.discussions import EVENT_TYPES, STATUSES, Discussion, Event
from registry.domain.errors import InvalidError
from registry.domain.xet.types import Term, XetHash, XorbRef

Body = dict[str, Any]  # a JSON object
GATES = ("auto", "manual")  # how a gated repo's access requests are accepted


@dataclass(frozen=True)
class RepoUpsert:
    """A repo came into being (or a new incarnation of a deleted one)."""

    KIND: ClassVar[str] = "repo.upsert"
    incarnation: str
    private: bool
    home: str
    created_ms: int

    def body(self) -> Body:
        return {
            "private": self.private,
            "home": self.home,
            "incarnation": self.incarnation,
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RepoUpsert:
        return cls(
            _text(body, "incarnation"),
            _flag(body, "private"),
            _text(body, "home"),
            _number(body, "created_ms"),
        )


@dataclass(frozen=True)
class RepoDelete:
    """A repo's incarnation was deleted; it never comes back (a tombstone on replicas)."""

    KIND: ClassVar[str] = "repo.delete"
    incarnation: str

    def body(self) -> Body:
        return {"incarnation": self.incarnation}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RepoDelete:
        return cls(_text(body, "incarnation"))


@dataclass(frozen=True)
class RepoMove:
    """A repo was renamed or transferred: entries after this one name it by `to` (its new key,
    type/namespace/name); the entry itself names it by its old key."""

    KIND: ClassVar[str] = "repo.move"
    incarnation: str
    to: str

    def body(self) -> Body:
        return {"to": self.to, "incarnation": self.incarnation}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RepoMove:
        to = _text(body, "to")
        if to.count("/") != 2:
            raise InvalidError("A moved repo's new key is type/namespace/name")
        return cls(_text(body, "incarnation"), to)


@dataclass(frozen=True)
class RepoSettings:
    """A repo's settings changed: who may see it (`private`) and whether downloading its
    files needs an accepted access request (`gated`: "auto", "manual", or None: open)."""

    KIND: ClassVar[str] = "repo.settings"
    incarnation: str
    private: bool
    gated: str | None

    def body(self) -> Body:
        return {"private": self.private, "gated": self.gated, "incarnation": self.incarnation}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RepoSettings:
        gated = body.get("gated")
        if gated is not None and gated not in GATES:
            raise InvalidError(f"A repo's gate is one of {GATES} or null")
        return cls(_text(body, "incarnation"), _flag(body, "private"), gated)


@dataclass(frozen=True)
class CommitAdd:
    """A commit with its whole tree (each file: path, BLAKE3, SHA-256, size, LFS, git SHA-1)."""

    KIND: ClassVar[str] = "commit.add"
    incarnation: str
    id: str
    parent: str | None
    author: str
    title: str
    message: str
    created_ms: int
    tree: tuple[TreeEntry, ...]

    def body(self) -> Body:
        return {
            "id": self.id,
            "parent": self.parent,
            "author": self.author,
            "title": self.title,
            "message": self.message,
            "created_ms": self.created_ms,
            "tree": [
                [e.path, e.blake3.hex, e.sha256, e.size, e.lfs, e.git_sha1] for e in self.tree
            ],
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CommitAdd:
        parent = body.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise InvalidError("A commit's parent is a commit id or null")
        rows = body.get("tree")
        if not isinstance(rows, list):
            raise InvalidError("A commit's tree is a list of files")
        return cls(
            _text(body, "incarnation"),
            _text(body, "id"),
            parent,
            _text(body, "author"),
            _text(body, "title"),
            str(body.get("message", "")),
            _number(body, "created_ms"),
            tuple(_tree_entry(row) for row in rows),
        )


@dataclass(frozen=True)
class RefSet:
    """A branch, tag or PR ref points at a commit; `version` orders a repo's ref moves."""

    KIND: ClassVar[str] = "ref.set"
    incarnation: str
    ref: str
    commit: str
    version: int

    def body(self) -> Body:
        return {
            "ref": self.ref,
            "commit": self.commit,
            "version": self.version,
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RefSet:
        return cls(
            _text(body, "incarnation"),
            _text(body, "ref"),
            _text(body, "commit"),
            _number(body, "version"),
        )


@dataclass(frozen=True)
class RefDelete:
    KIND: ClassVar[str] = "ref.delete"
    incarnation: str
    ref: str
    version: int

    def body(self) -> Body:
        return {"ref": self.ref, "version": self.version, "incarnation": self.incarnation}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RefDelete:
        return cls(_text(body, "incarnation"), _text(body, "ref"), _number(body, "version"))


@dataclass(frozen=True)
class XetFileAdd:
    """A file uploaded through Xet, named by a commit of the repo: how to rebuild it from its
    xorbs (terms over chunk runs; each xorb a blob of the blob store, by BLAKE3), and its
    identity as a blob. Written just before the `commit.add` that first names it, so a
    replica fetches the xorbs it lacks instead of the whole file."""

    KIND: ClassVar[str] = "xet.file"
    incarnation: str
    file: XetHash
    blake3: Digest
    sha256: str
    size: int
    terms: tuple[Term, ...]
    xorbs: tuple[XorbRef, ...]

    def body(self) -> Body:
        return {
            "file": self.file.hex,
            "blake3": self.blake3.hex,
            "sha256": self.sha256,
            "size": self.size,
            "terms": [[t.xorb.hex, t.start, t.end, t.length] for t in self.terms],
            "xorbs": [[x.hash.hex, x.blake3.hex, x.size] for x in self.xorbs],
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> XetFileAdd:
        terms, xorbs = body.get("terms"), body.get("xorbs")
        if not isinstance(terms, list) or not isinstance(xorbs, list):
            raise InvalidError("A Xet file's terms and xorbs are lists")
        change = cls(
            _text(body, "incarnation"),
            XetHash.parse(_text(body, "file")),
            Digest(_text(body, "blake3")),
            _text(body, "sha256"),
            _number(body, "size"),
            tuple(_term(row) for row in terms),
            tuple(_xorb_ref(row) for row in xorbs),
        )
        if {t.xorb for t in change.terms} != {x.hash for x in change.xorbs}:
            raise InvalidError("A Xet file's xorbs are exactly those its terms name")
        if sum(t.length for t in change.terms) != change.size:
            raise InvalidError("A Xet file's terms add up to its size")
        return change


@dataclass(frozen=True)
class CommitSquash:
    """A super-squash left these commits of the repo unreachable (the old head first, then its
    ancestors): their trees go, the commit rows stay. Written after the squash's commit and
    ref move."""

    KIND: ClassVar[str] = "commit.squash"
    incarnation: str
    commits: tuple[str, ...]

    def body(self) -> Body:
        return {"commits": list(self.commits), "incarnation": self.incarnation}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CommitSquash:
        commits = body.get("commits")
        if not isinstance(commits, list) or not all(isinstance(c, str) for c in commits):
            raise InvalidError("A squash's commits are a list of commit ids")
        return cls(_text(body, "incarnation"), tuple(commits))


@dataclass(frozen=True)
class FilePurge:
    """LFS files were permanently deleted from every commit of the repo: each by its SHA-256
    (what the Hub names it by) and the BLAKE3 of its blob here."""

    KIND: ClassVar[str] = "file.purge"
    incarnation: str
    files: tuple[tuple[str, Digest], ...]  # (sha256, blake3)

    def body(self) -> Body:
        return {
            "files": [[sha256, b3.hex] for sha256, b3 in self.files],
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> FilePurge:
        rows = body.get("files")
        if not isinstance(rows, list):
            raise InvalidError("A purge's files are a list of [sha256, blake3]")
        return cls(_text(body, "incarnation"), tuple(_purged_file(row) for row in rows))


@dataclass(frozen=True)
class DiscussionChange:
    """A discussion or PR as it stands after one event (opened, comment, status, commit,
    title, comment edit): a replica keeps the discussion and the event, by the event's id."""

    KIND: ClassVar[str] = "discussion.event"
    incarnation: str
    discussion: Discussion
    event: Event

    def body(self) -> Body:
        d, e = self.discussion, self.event
        return {
            "num": d.num,
            "title": d.title,
            "author": d.author,
            "status": d.status,
            "pull_request": d.pull_request,
            "created_ms": d.created_ms,
            "target": d.target,
            "base": d.base,
            "merge_commit": d.merge_commit,
            "event": {
                "id": e.id,
                "type": e.type,
                "author": e.author,
                "created_ms": e.created_ms,
                "data": dict(e.data),
                "edited_ms": e.edited_ms,
            },
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DiscussionChange:
        event = body.get("event")
        if not isinstance(event, dict):
            raise InvalidError("A discussion change's event is an object")
        data = event.get("data")
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise InvalidError("A discussion event's data maps names to strings")
        discussion = Discussion(
            _number(body, "num"),
            _text(body, "title"),
            _text(body, "author"),
            _choice(body, "status", STATUSES),
            _flag(body, "pull_request"),
            _number(body, "created_ms"),
            _optional_text(body, "target"),
            _optional_text(body, "base"),
            _optional_text(body, "merge_commit"),
        )
        edited = event.get("edited_ms")
        if edited is not None and (not isinstance(edited, int) or isinstance(edited, bool)):
            raise InvalidError("A discussion event's edited_ms is an integer or null")
        parsed = Event(
            _text(event, "id"),
            _choice(event, "type", EVENT_TYPES),
            _text(event, "author"),
            _number(event, "created_ms"),
            {str(k): v for k, v in data.items()},
            edited,
        )
        return cls(_text(body, "incarnation"), discussion, parsed)


@dataclass(frozen=True)
class UnknownChange:
    """A kind this version does not know (a newer peer's): recorded and re-served, not applied."""

    kind: str
    raw: Mapping[str, Any]


Change = (
    RepoUpsert
    | RepoDelete
    | RepoMove
    | RepoSettings
    | CommitAdd
    | RefSet
    | RefDelete
    | XetFileAdd
    | DiscussionChange
    | CommitSquash
    | FilePurge
)
_DECODERS: dict[str, Callable[[Mapping[str, Any]], Change]] = {
    cls.KIND: cls.from_body
    for cls in (
        RepoUpsert,
        RepoDelete,
        RepoMove,
        RepoSettings,
        CommitAdd,
        RefSet,
        RefDelete,
        XetFileAdd,
        DiscussionChange,
        CommitSquash,
        FilePurge,
    )
}
# What a mirror carries: a push-outbox row is written for these kinds (of public repos only).
MIRRORED_KINDS = (CommitAdd.KIND, RefSet.KIND, RefDelete.KIND)


@dataclass(frozen=True)
class ChangeEntry:
    """One entry of a change log as it is stored and served: where it was first written
    (`origin`, `origin_serial`), its serial in this log, and its body as written."""

    serial: int
    origin: str
    origin_serial: int
    kind: str
    repo: str  # repo key: type/namespace/name
    private: bool
    body: Body
    created_ms: int
    chain: str | None = None  # per-origin hash chain (registry.domain.history); None: unknown

    def change(self) -> Change | UnknownChange:
        """The typed change; raises InvalidError for a body its kind cannot have."""
        return decode(self.kind, self.body)


def decode(kind: str, body: Mapping[str, Any]) -> Change | UnknownChange:
    """The change an entry of `kind` with `body` stands for; raises InvalidError for a body
    its kind cannot have."""
    decoder = _DECODERS.get(kind)
    return UnknownChange(kind, body) if decoder is None else decoder(body)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise InvalidError(f"Change entry field {key!r} must be a string")
    return value


def _number(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidError(f"Change entry field {key!r} must be an integer")
    return value


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidError(f"Change entry field {key!r} must be a string or null")
    return value


def _choice(body: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = _text(body, key)
    if value not in choices:
        raise InvalidError(f"Change entry field {key!r} must be one of {', '.join(choices)}")
    return value


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise InvalidError(f"Change entry field {key!r} must be true or false")
    return value


def _tree_entry(row: object) -> TreeEntry:
    if not isinstance(row, list) or len(row) != 6:
        raise InvalidError("A tree row is [path, blake3, sha256, size, lfs, git_sha1]")
    path, b3, sha256, size, lfs, git_sha1 = row
    fields = {"path": path, "sha256": sha256, "size": size, "lfs": lfs}
    if not (isinstance(path, str) and isinstance(b3, str) and isinstance(sha256, str)):
        raise InvalidError(f"Malformed tree row {fields!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(lfs, bool):
        raise InvalidError(f"Malformed tree row {fields!r}")
    if git_sha1 is not None and not isinstance(git_sha1, str):
        raise InvalidError(f"Malformed tree row {fields!r}")
    return TreeEntry(path, Digest(b3), sha256, size, lfs, git_sha1)


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidError("A Xet count or size is a non-negative integer")
    return value


def _term(row: object) -> Term:
    if not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str):
        raise InvalidError("A Xet term is [xorb, start, end, length]")
    start, end, length = (_count(v) for v in row[1:])
    if start >= end:
        raise InvalidError("A Xet term names at least one chunk")
    return Term(XetHash.parse(row[0]), start, end, length)


def _xorb_ref(row: object) -> XorbRef:
    if not isinstance(row, list) or len(row) != 3 or not all(isinstance(v, str) for v in row[:2]):
        raise InvalidError("A Xet file's xorb is [xorb, blake3, size]")
    return XorbRef(XetHash.parse(row[0]), Digest(row[1]), _count(row[2]))


def _purged_file(row: object) -> tuple[str, Digest]:
    if not isinstance(row, list) or len(row) != 2 or not all(isinstance(v, str) for v in row):
        raise InvalidError("A purged file is [sha256, blake3]")
    sha256, b3 = row
    if not is_sha256(sha256):
        raise InvalidError("A purged file's SHA-256 is 64 lower-case hex digits")
    return sha256, Digest(b3)
