"""The replication planner, on plain data: idempotence, home authority, ordering, tombstones."""

from __future__ import annotations

from dataclasses import replace

from registry.domain.changes import ChangeEntry, CommitAdd
from registry.domain.replication import (
    Abandon,
    AddCommit,
    AddXetFile,
    AliasRepo,
    Collide,
    CreateRepo,
    DeleteRef,
    DeleteRepo,
    KeepDiscussion,
    LocalView,
    MoveRepo,
    Record,
    RepoState,
    SetRef,
)
from sync.planner import plan

REPO = "model/alice/m1"


def entry(
    serial: int, kind: str, body: dict[str, object], origin: str = "A", repo: str = REPO
) -> ChangeEntry:
    return ChangeEntry(serial, origin, serial, kind, repo, False, {"incarnation": "i1", **body}, 0)


def commit(commit_id: str, parent: str | None = None) -> dict[str, object]:
    """A commit.add body with an empty tree."""
    return {
        "id": commit_id,
        "parent": parent,
        "author": "alice",
        "title": "t",
        "message": "",
        "created_ms": 7,
        "tree": [],
    }


def history(origin: str = "A") -> list[ChangeEntry]:
    return [
        entry(1, "repo.upsert", {"home": "A", "private": False, "created_ms": 5}, origin),
        entry(2, "commit.add", commit("c1"), origin),
        entry(3, "ref.set", {"ref": "refs/heads/main", "commit": "c1", "version": 1}, origin),
    ]


def empty_view(node_id: str = "B") -> LocalView:
    return LocalView(node_id, {}, {}, set(), set())


def test_plan_applies_a_fresh_history_in_order() -> None:
    actions = plan(empty_view(), history())
    kinds = [type(a) for a in actions]
    assert kinds == [CreateRepo, Record, AddCommit, Record, SetRef, Record]
    assert actions[4] == SetRef(REPO, "refs/heads/main", "c1", 1)


def test_plan_same_batch_twice_is_a_no_op() -> None:
    view = empty_view()
    plan(view, history())
    assert plan(view, history()) == []


def test_plan_ignores_entries_that_originated_here() -> None:
    assert plan(empty_view(node_id="A"), history()) == []


def test_plan_records_but_ignores_claims_not_made_by_the_home() -> None:
    view = empty_view()
    plan(view, history())
    forged = entry(
        9, "ref.set", {"ref": "refs/heads/main", "commit": "c1", "version": 7}, origin="M"
    )
    assert plan(view, [forged]) == [
        Record(forged, None)
    ]  # M does not speak for A's repo: no mirror push
    fake_home = entry(
        1, "repo.upsert", {"home": "A", "created_ms": 1}, origin="M", repo="model/alice/other"
    )
    assert plan(view, [fake_home]) == [Record(fake_home, "model/alice/other")]


def test_plan_ignores_stale_ref_moves() -> None:
    view = empty_view()
    plan(view, history())
    newer = entry(4, "ref.set", {"ref": "refs/heads/main", "commit": "c1", "version": 5})
    older = entry(5, "ref.set", {"ref": "refs/heads/main", "commit": "c1", "version": 3})
    actions = plan(view, [newer, older])
    assert [type(a) for a in actions] == [SetRef, Record, Record]


def test_plan_never_points_a_ref_at_a_missing_commit() -> None:
    view = empty_view()
    plan(view, history()[:1])
    dangling = entry(3, "ref.set", {"ref": "refs/heads/main", "commit": "nope", "version": 1})
    assert plan(view, [dangling]) == [Record(dangling, REPO)]


def test_plan_delete_leaves_a_tombstone_so_late_entries_stay_dead() -> None:
    view = empty_view()
    plan(view, history())
    actions = plan(view, [entry(4, "repo.delete", {})])
    assert actions[0] == DeleteRepo(REPO, "i1")
    late = entry(2, "commit.add", commit("c2"), origin="A")
    late = ChangeEntry(2, "A", 99, late.kind, late.repo, False, late.body, 0)
    assert plan(view, [late]) == [Record(late, REPO)]
    again = ChangeEntry(
        1,
        "A",
        100,
        "repo.upsert",
        REPO,
        False,
        {"incarnation": "i1", "home": "A", "private": False, "created_ms": 1},
        0,
    )
    assert plan(view, [again]) == [Record(again, REPO)]


def test_plan_new_incarnation_replaces_the_old_one() -> None:
    view = empty_view()
    plan(view, history())
    reborn = ChangeEntry(
        7,
        "A",
        7,
        "repo.upsert",
        REPO,
        False,
        {"incarnation": "i2", "home": "A", "private": False, "created_ms": 9},
        0,
    )
    actions = plan(view, [reborn])
    assert actions[:2] == [DeleteRepo(REPO, "i1"), CreateRepo(REPO, "i2", "A", False, 9)]


def test_plan_ref_delete_needs_a_newer_version() -> None:
    view = empty_view()
    plan(view, history())
    stale = entry(4, "ref.delete", {"ref": "refs/heads/main", "version": 1})
    fresh = entry(5, "ref.delete", {"ref": "refs/heads/main", "version": 2})
    assert plan(view, [stale, fresh]) == [
        Record(stale, REPO),
        DeleteRef(REPO, "refs/heads/main", 2),
        Record(fresh, REPO),
    ]


def test_plan_records_unknown_kinds_and_malformed_bodies_without_applying_them() -> None:
    view = empty_view()
    plan(view, history())
    newer = entry(4, "xet.recipe", {"anything": [1, 2]})
    broken = entry(5, "commit.add", {"id": "c9", "tree": "not a list"})
    stale_looking = entry(6, "ref.set", {"ref": "refs/heads/main", "commit": "c1"})  # no version
    assert plan(view, [newer, broken, stale_looking]) == [
        Record(newer, REPO),
        Record(broken, REPO),
        Record(stale_looking, REPO),
    ]
    assert plan(view, [newer]) == []  # recorded once: known by (origin, origin serial) after


def test_plan_keeps_a_xet_recipe_said_by_the_home_only() -> None:
    recipe = {
        "file": "11" * 32,
        "blake3": "22" * 32,
        "sha256": "33" * 32,
        "size": 4,
        "terms": [["44" * 32, 0, 1, 4]],
        "xorbs": [["44" * 32, "55" * 32, 100]],
    }
    actions = plan(empty_view(), [*history(), entry(4, "xet.file", recipe)])
    assert isinstance(actions[-2], AddXetFile) and actions[-2].file.size == 4
    view = empty_view()
    stray = [*history(), entry(4, "xet.file", recipe, origin="C")]  # C is not the home
    assert [type(a) for a in plan(view, stray)][-1:] == [Record]
    assert not any(isinstance(a, AddXetFile) for a in plan(empty_view(), stray))


def test_plan_keeps_a_discussion_said_by_the_home_only() -> None:
    said = {
        "num": 1,
        "title": "Hello",
        "author": "bob",
        "status": "open",
        "pull_request": False,
        "created_ms": 8,
        "target": None,
        "base": None,
        "merge_commit": None,
        "event": {
            "id": "ab" * 12,
            "type": "comment",
            "author": "bob",
            "created_ms": 8,
            "data": {"text": "hi"},
            "edited_ms": None,
        },
    }
    actions = plan(empty_view(), [*history(), entry(4, "discussion.event", said)])
    kept = actions[-2]
    assert isinstance(kept, KeepDiscussion) and kept.repo == REPO
    assert kept.change.discussion.title == "Hello" and kept.change.event.data == {"text": "hi"}
    stray = [*history(), entry(4, "discussion.event", said, origin="C")]  # C is not the home
    assert not any(isinstance(a, KeepDiscussion) for a in plan(empty_view(), stray))
    gone = [*history(), entry(4, "repo.delete", {}), entry(5, "discussion.event", said)]
    assert not any(isinstance(a, KeepDiscussion) for a in plan(empty_view(), gone))


def chained(entries: list[ChangeEntry], tag: str) -> list[ChangeEntry]:
    return [replace(e, chain=f"{tag}{e.origin_serial}") for e in entries]


def test_plan_skips_an_entry_held_with_the_same_chain_or_none_known() -> None:
    view = empty_view()
    plan(view, chained(history(), "old"))
    assert plan(view, chained(history(), "old")) == []
    assert plan(view, history()) == []  # no chain (a node before chains): same identity


def test_plan_stops_with_abandon_at_an_entry_of_another_history() -> None:
    view = empty_view()
    plan(view, chained(history(), "old"))
    again = chained(history(), "old")[:2] + chained(history(), "new")[2:]
    actions = plan(view, again)
    assert actions == [Abandon("A", 2)]  # entries 1 and 2 held alike; 3 differs
    assert view.applied[("A", 3)] == "old3"  # the service sets aside, then plans again


def test_plan_never_replaces_a_repo_held_here_for_another_home() -> None:
    view = empty_view()
    view.repos[REPO] = RepoState("mine", "B")  # made here, on B, with the same id
    upsert = entry(1, "repo.upsert", {"home": "A", "private": False, "created_ms": 5})
    qualified = "model/alice.A/m1"
    assert plan(view, [upsert]) == [
        Collide(REPO, "A", "i1", qualified),
        AliasRepo(REPO, "A", qualified),
        CreateRepo(qualified, "i1", "A", False, 5),
        Record(upsert, qualified),
    ]
    assert view.repos[REPO] == RepoState("mine", "B")
    # A's later entries about its repo apply to the one held under the qualified id.
    rest = history()[1:]
    actions = plan(view, rest)
    assert actions[0] == AddCommit(qualified, CommitAdd.from_body(rest[0].body))
    assert SetRef(qualified, "refs/heads/main", "c1", 1) in actions
    assert view.repos[REPO] == RepoState("mine", "B")


def test_plan_leaves_out_a_peers_repo_whose_qualified_id_is_taken_too() -> None:
    view = empty_view()
    view.repos[REPO] = RepoState("mine", "B")
    view.repos["model/alice.A/m1"] = RepoState("other", "C")
    upsert = entry(1, "repo.upsert", {"home": "A", "private": False, "created_ms": 5})
    assert plan(view, [upsert]) == [Collide(REPO, "A", "i1", None), Record(upsert, None)]


MOVED = "model/bob/m2"


def moved_history() -> list[ChangeEntry]:
    """A's repo moved to MOVED, then a commit under its new key."""
    return [
        *history(),
        entry(4, "repo.move", {"to": MOVED}),
        entry(5, "commit.add", commit("c2", "c1"), repo=MOVED),
        entry(6, "ref.set", {"ref": "refs/heads/main", "commit": "c2", "version": 2}, repo=MOVED),
    ]


def test_plan_moves_a_repo_and_applies_its_later_entries_under_the_new_key() -> None:
    view = empty_view()
    entries = moved_history()
    actions = plan(view, entries)
    assert MoveRepo(REPO, MOVED, MOVED, "A") in actions
    assert AddCommit(MOVED, CommitAdd.from_body(entries[4].body)) in actions
    assert SetRef(MOVED, "refs/heads/main", "c2", 2) in actions
    assert REPO not in view.repos
    assert view.repos[MOVED].refs == {"refs/heads/main": 2}
    assert plan(view, entries) == []  # applied already


def test_plan_moves_a_repo_onto_a_taken_id_under_its_qualified_id() -> None:
    view = empty_view()
    view.repos[MOVED] = RepoState("mine", "B")  # B has a repo of the new id
    entries = moved_history()
    actions = plan(view, entries)
    qualified = "model/bob.A/m2"
    assert MoveRepo(REPO, qualified, MOVED, "A") in actions
    assert view.aliases[(MOVED, "A")] == qualified
    assert AddCommit(qualified, CommitAdd.from_body(entries[4].body)) in actions
    assert SetRef(qualified, "refs/heads/main", "c2", 2) in actions
    assert view.repos[MOVED] == RepoState("mine", "B")


def test_plan_moves_an_aliased_repo_and_drops_its_old_alias() -> None:
    view = empty_view()
    view.repos[REPO] = RepoState("mine", "B")  # A's repo is held as model/alice.A/m1
    entries = moved_history()
    actions = plan(view, entries)
    assert MoveRepo("model/alice.A/m1", MOVED, MOVED, "A") in actions
    assert (REPO, "A") not in view.aliases
    assert SetRef(MOVED, "refs/heads/main", "c2", 2) in actions
    assert view.repos[REPO] == RepoState("mine", "B")


def test_plan_ignores_a_move_not_said_by_the_home() -> None:
    view = empty_view()
    plan(view, history())
    forged = entry(1, "repo.move", {"to": MOVED}, origin="C")
    assert plan(view, [forged]) == [Record(forged, None)]
    assert MOVED not in view.repos


def test_plan_records_a_move_with_a_malformed_target_without_applying_it() -> None:
    view = empty_view()
    plan(view, history())
    for serial, to in ((4, "bob/m2"), (5, None)):
        bad = entry(serial, "repo.move", {"to": to})
        assert plan(view, [bad]) == [Record(bad, REPO)]
    assert REPO in view.repos
