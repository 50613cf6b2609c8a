"""Turns a batch of peer entries plus the local view into actions.

Theory of operation (invariants the puller relies on):
- An entry is identified by (origin, origin_serial); one already applied, or one that
  originated here, yields nothing: applying a batch twice is a no-op.
- Every other entry is recorded in the local log, even when it changes nothing (stale), so
  it is re-served to our own peers (A -> B -> C) and recognised when it arrives again.
- Only a repo's home node speaks for it: entries about repo R are used only if their origin
  is R's home. A deleted incarnation (tombstone) never comes back.
- Ref moves apply only with a version newer than the one held, and only to a commit the node
  has, so no node ever shows a ref it cannot resolve.
The planner mutates `view` as it goes, so later entries of a batch see earlier ones.
"""

from __future__ import annotations

from registry.domain.replication import (
    Action,
    AddCommit,
    CreateRepo,
    DeleteRef,
    DeleteRepo,
    Entry,
    LocalView,
    Record,
    RepoState,
    SetRef,
)


def plan(view: LocalView, entries: list[Entry]) -> list[Action]:
    actions: list[Action] = []
    for entry in entries:
        key = (entry.origin, entry.origin_serial)
        if key in view.applied or entry.origin == view.node_id:
            continue
        view.applied.add(key)
        actions.extend(_plan_entry(view, entry))
        actions.append(Record(entry))
    return actions


def _plan_entry(view: LocalView, entry: Entry) -> list[Action]:
    incarnation = str(entry.body.get("incarnation", ""))
    if (entry.repo, incarnation) in view.tombstones:
        return []
    if entry.kind == "repo.upsert":
        return _upsert(view, entry, incarnation)
    state = view.repos.get(entry.repo)
    if state is None or state.incarnation != incarnation or state.home != entry.origin:
        return []  # unknown repo, another incarnation, or not said by its home
    if entry.kind == "commit.add":
        return _add_commit(view, entry)
    if entry.kind == "ref.set":
        return _set_ref(view, state, entry)
    if entry.kind == "ref.delete":
        return _delete_ref(state, entry)
    if entry.kind == "repo.delete":
        view.tombstones.add((entry.repo, incarnation))
        del view.repos[entry.repo]
        return [DeleteRepo(entry.repo, incarnation)]
    return []  # a kind this version does not know: recorded, not applied


def _upsert(view: LocalView, entry: Entry, incarnation: str) -> list[Action]:
    home = str(entry.body.get("home", ""))
    if home != entry.origin or home == view.node_id:
        return []
    actions: list[Action] = []
    state = view.repos.get(entry.repo)
    if state is not None and state.incarnation == incarnation:
        return []
    if state is not None:  # an older incarnation whose delete we never saw
        view.tombstones.add((entry.repo, state.incarnation))
        actions.append(DeleteRepo(entry.repo, state.incarnation))
    view.repos[entry.repo] = RepoState(incarnation, home)
    created = int(entry.body.get("created_ms", entry.created_ms))
    actions.append(CreateRepo(entry.repo, incarnation, home, entry.private, created))
    return actions


def _add_commit(view: LocalView, entry: Entry) -> list[Action]:
    commit_id = str(entry.body.get("id", ""))
    if not commit_id or commit_id in view.commits:
        return []
    view.commits.add(commit_id)
    return [AddCommit(entry.repo, entry.body)]


def _set_ref(view: LocalView, state: RepoState, entry: Entry) -> list[Action]:
    ref, commit = str(entry.body.get("ref", "")), str(entry.body.get("commit", ""))
    version = int(entry.body.get("version", 0))
    if version <= state.refs.get(ref, 0) or commit not in view.commits:
        return []
    state.refs[ref] = version
    return [SetRef(entry.repo, ref, commit, version)]


def _delete_ref(state: RepoState, entry: Entry) -> list[Action]:
    ref, version = str(entry.body.get("ref", "")), int(entry.body.get("version", 0))
    if version <= state.refs.get(ref, 0):
        return []
    state.refs[ref] = version
    return [DeleteRef(entry.repo, ref, version)]
