"""The history-rewrite changes (`commit.squash`, `file.purge`): their bodies round trip and are
checked; the planner applies them to the repo held for their home (under an alias too), once,
and only when the home said them."""

from __future__ import annotations

import pytest

from registry.domain.changes import ChangeEntry, CommitSquash, FilePurge, decode
from registry.domain.digest import hash_bytes
from registry.domain.errors import InvalidError
from registry.domain.replication import (
    AliasRepo,
    Collide,
    CreateRepo,
    LocalView,
    PurgeFiles,
    Record,
    RepoState,
    SquashCommits,
)
from sync.planner import plan

REPO = "model/alice/m1"
B3 = hash_bytes(b"leaked").blake3
SHA = "ab" * 32
SQUASH: dict[str, object] = {"commits": ["c" * 40, "d" * 40], "incarnation": "i1"}
PURGE: dict[str, object] = {"files": [[SHA, B3.hex]], "incarnation": "i1"}


def rewrite_entry(
    serial: int, kind: str, body: dict[str, object], origin: str = "A"
) -> ChangeEntry:
    return ChangeEntry(serial, origin, serial, kind, REPO, False, body, 0)


def held_view() -> LocalView:
    return LocalView("B", {}, {REPO: RepoState("i1", "A")}, set(), set())


def test_squash_body_round_trips_in_history_order() -> None:
    change = CommitSquash("i1", ("d" * 40, "c" * 40))
    assert change.body() == {"commits": ["d" * 40, "c" * 40], "incarnation": "i1"}
    assert decode("commit.squash", change.body()) == change


def test_purge_body_round_trips() -> None:
    change = FilePurge("i1", ((SHA, B3),))
    assert change.body() == PURGE
    assert decode("file.purge", change.body()) == change


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("commit.squash", {"commits": "c" * 40, "incarnation": "i1"}),
        ("commit.squash", {"commits": [7], "incarnation": "i1"}),
        ("commit.squash", {"commits": []}),
        ("file.purge", {"files": [SHA], "incarnation": "i1"}),
        ("file.purge", {"files": [["AB" * 32, B3.hex]], "incarnation": "i1"}),
        ("file.purge", {"files": [[SHA, "not-blake3"]], "incarnation": "i1"}),
        ("file.purge", {"files": [[SHA, B3.hex, 5]], "incarnation": "i1"}),
        ("file.purge", {"incarnation": "i1"}),
    ],
)
def test_a_body_it_cannot_have_is_refused(kind: str, body: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        decode(kind, body)


def test_planner_applies_the_homes_rewrites_once_and_records_them() -> None:
    view = held_view()
    squash = rewrite_entry(4, "commit.squash", SQUASH)
    purge = rewrite_entry(5, "file.purge", PURGE)
    assert plan(view, [squash, purge]) == [
        SquashCommits(REPO, ("c" * 40, "d" * 40)),
        Record(squash, REPO),
        PurgeFiles(REPO, (SHA,)),
        Record(purge, REPO),
    ]
    assert plan(view, [squash, purge]) == []  # the same entries again: nothing


def test_planner_ignores_rewrites_not_said_by_the_home_or_of_another_incarnation() -> None:
    forged = rewrite_entry(4, "commit.squash", SQUASH, origin="M")
    older = rewrite_entry(5, "file.purge", {**PURGE, "incarnation": "i0"})
    bad = rewrite_entry(6, "file.purge", {"files": [["nope", B3.hex]], "incarnation": "i1"})
    assert plan(held_view(), [forged, older, bad]) == [
        Record(forged, None),
        Record(older, REPO),
        Record(bad, REPO),
    ]


def test_planner_applies_rewrites_to_a_repo_held_under_its_qualified_id() -> None:
    view = LocalView("B", {}, {REPO: RepoState("mine", "B")}, set(), set())
    made = {"home": "A", "private": False, "created_ms": 5, "incarnation": "i1"}
    upsert = rewrite_entry(1, "repo.upsert", made)
    qualified = "model/alice.A/m1"
    assert plan(view, [upsert])[:3] == [
        Collide(REPO, "A", "i1", qualified),
        AliasRepo(REPO, "A", qualified),
        CreateRepo(qualified, "i1", "A", False, 5),
    ]
    squash = rewrite_entry(2, "commit.squash", SQUASH)
    purge = rewrite_entry(3, "file.purge", PURGE)
    assert plan(view, [squash, purge]) == [
        SquashCommits(qualified, ("c" * 40, "d" * 40)),
        Record(squash, qualified),
        PurgeFiles(qualified, (SHA,)),
        Record(purge, qualified),
    ]
    assert view.repos[REPO] == RepoState("mine", "B")  # the repo made here is left alone
