"""Typed change-log entries: each kind's body, read back, and what a body it cannot have does."""

from __future__ import annotations

import json

import pytest

from registry.domain.changes import (
    Change,
    ChangeEntry,
    CommitAdd,
    DiscussionChange,
    RefDelete,
    RefSet,
    RepoDelete,
    RepoMove,
    RepoUpsert,
    UnknownChange,
    XetFileAdd,
    decode,
)
from registry.domain.commit import TreeEntry
from registry.domain.digest import hash_bytes
from registry.domain.discussions import Discussion, Event
from registry.domain.errors import InvalidError
from registry.domain.xet.types import Term, XetHash, XorbRef

B3 = hash_bytes(b"weights").blake3
FILE = TreeEntry("m.safetensors", B3, "ab" * 32, 7, True, None)
TEXT = TreeEntry("README.md", hash_bytes(b"# m").blake3, "cd" * 32, 3, False, "ef" * 20)
CHANGES: list[Change] = [
    RepoUpsert("inc1", False, "node-a", 1700000000000),
    RepoDelete("inc1"),
    CommitAdd("inc1", "c" * 40, None, "alice", "initial", "", 1700000000001, (FILE, TEXT)),
    CommitAdd("inc1", "d" * 40, "c" * 40, "alice", "more", "why", 1700000000002, ()),
    RefSet("inc1", "refs/heads/main", "c" * 40, 3),
    RefDelete("inc1", "refs/tags/v1", 4),
]
XORB_A, XORB_B = XetHash(bytes(range(32))), XetHash(bytes(32 * [7]))
XET_FILE = XetFileAdd(
    "inc1",
    XetHash(bytes(32 * [1])),
    B3,
    "ab" * 32,
    30,
    (Term(XORB_A, 0, 2, 10), Term(XORB_B, 5, 6, 15), Term(XORB_A, 3, 4, 5)),
    (XorbRef(XORB_A, B3, 999), XorbRef(XORB_B, TEXT.blake3, 888)),
)
CHANGES.append(XET_FILE)
CHANGES.append(RepoMove("inc1", "model/bob/m2"))
PULL = Discussion(
    2, "Add a file", "bob", "merged", True, 1700000000003, "refs/heads/main", "c" * 40, "d" * 40
)
COMMENT = Event("ab" * 12, "comment", "bob", 1700000000004, {"text": "please"}, 1700000000005)
CHANGES += [
    DiscussionChange("inc1", PULL, COMMENT),
    DiscussionChange(
        "inc1",
        Discussion(3, "Why?", "carol", "open", False, 1700000000006),
        Event("cd" * 12, "title-change", "carol", 1700000000007, {"from": "Why", "to": "Why?"}),
    ),
]
DISCUSSION = CHANGES[-2].body()


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.KIND)
def test_changes_read_back_what_they_write(change: Change) -> None:
    stored = json.loads(json.dumps(change.body(), sort_keys=True))  # as the log keeps it
    assert decode(change.KIND, stored) == change
    assert stored["incarnation"] == "inc1"


def test_changes_bodies_keep_their_wire_keys() -> None:
    """The keys nodes of earlier versions write and read (the golden feed test holds bytes)."""
    assert set(CHANGES[0].body()) == {"private", "home", "incarnation", "created_ms"}
    assert set(CHANGES[1].body()) == {"incarnation"}
    commit = CHANGES[2].body()
    assert set(commit) == {
        "id",
        "parent",
        "author",
        "title",
        "message",
        "created_ms",
        "tree",
        "incarnation",
    }
    assert commit["tree"][0] == ["m.safetensors", B3.hex, "ab" * 32, 7, True, None]
    assert set(CHANGES[4].body()) == {"ref", "commit", "version", "incarnation"}
    assert set(CHANGES[5].body()) == {"ref", "version", "incarnation"}
    assert RepoMove("inc1", "model/bob/m2").body() == {"to": "model/bob/m2", "incarnation": "inc1"}
    xet = XET_FILE.body()
    assert set(xet) == {"file", "blake3", "sha256", "size", "terms", "xorbs", "incarnation"}
    assert xet["terms"][0] == [XORB_A.hex, 0, 2, 10]  # hashes in the Xet string form
    assert xet["xorbs"][1] == [XORB_B.hex, TEXT.blake3.hex, 888]
    assert set(DISCUSSION) == {
        "num",
        "title",
        "author",
        "status",
        "pull_request",
        "created_ms",
        "target",
        "base",
        "merge_commit",
        "event",
        "incarnation",
    }
    assert DISCUSSION["event"] == {
        "id": "ab" * 12,
        "type": "comment",
        "author": "bob",
        "created_ms": 1700000000004,
        "data": {"text": "please"},
        "edited_ms": 1700000000005,
    }


COMMIT = {"incarnation": "i", "id": "c", "author": "a", "title": "t", "created_ms": 1}
XET = XET_FILE.body()


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("repo.upsert", {"incarnation": "i", "private": "no", "home": "a", "created_ms": 1}),
        ("repo.upsert", {"incarnation": "i", "private": False, "home": "a"}),
        ("repo.delete", {}),
        ("ref.set", {"incarnation": "i", "ref": "r", "commit": "c", "version": True}),
        ("ref.delete", {"incarnation": "i", "ref": 5, "version": 1}),
        ("commit.add", {**COMMIT, "tree": "x"}),
        ("commit.add", {**COMMIT, "tree": [["p", "not-a-digest", "s", 1, True, None]]}),
        ("commit.add", {**COMMIT, "tree": [["p", B3.hex, "s", 1, True]]}),
        ("commit.add", {**COMMIT, "tree": [], "parent": 7}),
        ("xet.file", {**XET, "file": "A" * 64}),  # not the lowercase string form
        ("xet.file", {**XET, "terms": [[XORB_A.hex, 2, 2, 0]]}),  # no chunk
        ("xet.file", {**XET, "terms": [[XORB_A.hex, 0, 1, -5]]}),
        ("xet.file", {**XET, "terms": [[XORB_A.hex, 0, 1]]}),
        ("xet.file", {**XET, "xorbs": XET["xorbs"][:1]}),  # a term's xorb not listed
        ("xet.file", {**XET, "size": 31}),  # terms add up to 30
        ("xet.file", {**XET, "xorbs": [[XORB_A.hex, "nope", 1], XET["xorbs"][1]]}),
        ("xet.file", {**XET, "terms": "all of them"}),
        ("discussion.event", {**DISCUSSION, "status": "pending"}),
        ("discussion.event", {**DISCUSSION, "num": "2"}),
        ("discussion.event", {**DISCUSSION, "base": 5}),
        ("discussion.event", {**DISCUSSION, "event": "a comment"}),
        ("discussion.event", {**DISCUSSION, "event": {**DISCUSSION["event"], "type": "like"}}),
        ("discussion.event", {**DISCUSSION, "event": {**DISCUSSION["event"], "data": {"n": 1}}}),
    ],
)
def test_changes_refuse_a_body_their_kind_cannot_have(kind: str, body: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        decode(kind, body)


def test_changes_of_an_unknown_kind_keep_their_body_as_it_came() -> None:
    body = {"incarnation": "i", "recipe": [1, 2, {"chunk": "x"}]}
    entry = ChangeEntry(9, "node-b", 4, "xet.recipe", "model/a/b", False, body, 5)
    change = entry.change()
    assert change == UnknownChange("xet.recipe", body)
    assert change.raw is body  # never re-encoded: what is recorded is what came


def test_a_move_names_a_whole_new_key() -> None:
    for to in ("bob/m2", "model/bob/m2/x", 7):
        with pytest.raises(InvalidError):
            decode(RepoMove.KIND, {"incarnation": "inc1", "to": to})
