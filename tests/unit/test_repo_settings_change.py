"""The `repo.settings` change: its body round trips and is checked; the planner applies it
to a repo held for its home, and only then; the gate rule."""

from __future__ import annotations

import pytest

from registry.domain.access import ANONYMOUS, Principal, passes_gate
from registry.domain.changes import ChangeEntry, RepoSettings, decode
from registry.domain.errors import InvalidError
from registry.domain.replication import LocalView, Record, RepoState, SetRepoSettings
from sync.planner import plan

REPO = "model/alice/m1"


def settings_entry(serial: int, body: dict[str, object], origin: str = "A") -> ChangeEntry:
    return ChangeEntry(serial, origin, serial, "repo.settings", REPO, False, body, 0)


@pytest.mark.parametrize("gated", [None, "auto", "manual"])
@pytest.mark.parametrize("private", [False, True])
def test_body_round_trips(private: bool, gated: str | None) -> None:
    change = RepoSettings("i1", private, gated)
    body = change.body()
    assert body == {"private": private, "gated": gated, "incarnation": "i1"}
    assert decode("repo.settings", body) == change


@pytest.mark.parametrize(
    "body",
    [
        {"private": True, "gated": "sometimes", "incarnation": "i1"},
        {"private": True, "gated": False, "incarnation": "i1"},
        {"private": "yes", "gated": None, "incarnation": "i1"},
        {"private": True, "gated": None},
    ],
)
def test_body_with_a_field_it_cannot_have_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(InvalidError):
        RepoSettings.from_body(body)


def held_view() -> LocalView:
    return LocalView("B", {}, {REPO: RepoState("i1", "A")}, set(), set())


def test_planner_applies_the_homes_settings_and_records_them() -> None:
    made_private = settings_entry(4, {"private": True, "gated": "auto", "incarnation": "i1"})
    assert plan(held_view(), [made_private]) == [
        SetRepoSettings(REPO, True, "auto"),
        Record(made_private, REPO),
    ]


def test_planner_ignores_settings_not_said_by_the_home_or_of_another_incarnation() -> None:
    forged = settings_entry(4, {"private": False, "gated": None, "incarnation": "i1"}, "M")
    older = settings_entry(5, {"private": True, "gated": None, "incarnation": "i0"})
    unknown = ChangeEntry(6, "A", 6, "repo.settings", "model/alice/other", False, older.body, 0)
    bad = settings_entry(7, {"private": True, "gated": "maybe", "incarnation": "i1"})
    assert plan(held_view(), [forged, older, unknown, bad]) == [
        Record(forged, None),
        Record(older, REPO),
        Record(unknown, "model/alice/other"),
        Record(bad, REPO),
    ]


def test_gate_admits_writers_the_admin_and_accepted_users() -> None:
    bob, alice = Principal("bob"), Principal("alice")
    admin = Principal("root", is_admin=True)
    assert passes_gate(ANONYMOUS, gated=None, namespace="alice", accepted=False)
    assert not passes_gate(ANONYMOUS, gated="auto", namespace="alice", accepted=False)
    assert not passes_gate(bob, gated="manual", namespace="alice", accepted=False)
    assert passes_gate(bob, gated="manual", namespace="alice", accepted=True)
    assert passes_gate(alice, gated="manual", namespace="alice", accepted=False)
    assert passes_gate(admin, gated="auto", namespace="alice", accepted=False)
