"""Turns a batch of peer entries plus the local view into actions.

Theory of operation (invariants the puller relies on):
- An entry is identified by (origin, origin_serial); one already applied, or one that
  originated here, yields nothing: applying a batch twice is a no-op.
- An entry whose (origin, origin_serial) is held here with another chain comes from a
  history its origin wrote after a restore: planning stops with `Abandon`, the service sets
  aside what the origin no longer has, and plans the rest of the batch again.
- Every other entry is recorded in the local log, even when it changes nothing (stale), so
  it is re-served to our own peers (A -> B -> C) and recognised when it arrives again. So are
  entries of a kind this version does not know, and entries whose body cannot be decoded:
  recorded as they came, never applied.
- Only a repo's home node speaks for it: entries about repo R are used only if their origin
  is R's home. A deleted incarnation (tombstone) never comes back. A repo of the same id homed
  on another node than the one held here (two nodes made it independently) never replaces the
  one held here: the collision is recorded (`Collide`) and the peer's repo is held under its
  qualified id (`type/namespace.home/name`, `AliasRepo`), where its later entries apply.
- A move (`repo.move`) renames the repo held here as its home did; the home's later entries
  name the new key and apply to it (under a qualified id if the new one is taken here).
- A repo's settings (private, gated) apply as its home last said them; entries come from
  the home in its order, so the newest applied is the newest said.
- Ref moves apply only with a version newer than the one held, and only to a commit the node
  has, so no node ever shows a ref it cannot resolve.
- History rewrites (`commit.squash`, `file.purge`) apply as the home made them: the commits it
  names lose their trees, the files it names leave every commit of the repo.
The planner mutates `view` as it goes, so later entries of a batch see earlier ones.
"""

from __future__ import annotations

from registry.domain.changes import (
    ChangeEntry,
    CommitAdd,
    CommitSquash,
    DiscussionChange,
    FilePurge,
    RefDelete,
    RefSet,
    RepoDelete,
    RepoMove,
    RepoSettings,
    RepoUpsert,
    UnknownChange,
    XetFileAdd,
)
from registry.domain.errors import InvalidError
from registry.domain.names import qualified_key
from registry.domain.replication import (
    Abandon,
    Action,
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
    PurgeFiles,
    Record,
    RepoState,
    SetRef,
    SetRepoSettings,
    SquashCommits,
)


def plan(view: LocalView, entries: list[ChangeEntry]) -> list[Action]:
    actions: list[Action] = []
    for entry in entries:
        key = (entry.origin, entry.origin_serial)
        if entry.origin == view.node_id:
            continue
        if key in view.applied:
            held = view.applied[key]
            if held is not None and entry.chain is not None and held != entry.chain:
                actions.append(Abandon(entry.origin, entry.origin_serial - 1))
                return actions
            continue
        view.applied[key] = entry.chain
        actions.extend(_plan_entry(view, entry))
        local = _local(view, entry)
        state = view.repos.get(local)
        mirrored = None if state is not None and state.home != entry.origin else local
        actions.append(Record(entry, mirrored))
    return actions


def _local(view: LocalView, entry: ChangeEntry) -> str:
    """The key of the repo held here that an entry is about (a peer's repo may be held under
    another id: see `_upsert`)."""
    return view.aliases.get((entry.repo, entry.origin), entry.repo)


def _plan_entry(view: LocalView, entry: ChangeEntry) -> list[Action]:
    try:
        change = entry.change()
    except InvalidError:
        return []  # a body its kind cannot have: recorded, not applied
    if isinstance(change, UnknownChange):
        return []  # a kind this version does not know: recorded, not applied
    repo = _local(view, entry)
    if (repo, change.incarnation) in view.tombstones:
        return []
    if isinstance(change, RepoUpsert):
        return _upsert(view, entry, change, repo)
    state = view.repos.get(repo)
    if state is None or state.incarnation != change.incarnation or state.home != entry.origin:
        return []  # unknown repo, another incarnation, or not said by its home
    match change:
        case CommitAdd():
            return _add_commit(view, repo, change)
        case RefSet():
            return _set_ref(view, state, repo, change)
        case RefDelete():
            return _delete_ref(state, repo, change)
        case RepoDelete():
            view.tombstones.add((repo, change.incarnation))
            del view.repos[repo]
            return [DeleteRepo(repo, change.incarnation)]
        case RepoMove():
            return _move(view, entry, change, repo, state)
        case XetFileAdd():
            return [AddXetFile(repo, change)]
        case RepoSettings():
            return [SetRepoSettings(repo, change.private, change.gated)]
        case DiscussionChange():
            return [KeepDiscussion(repo, change)]
        case CommitSquash():
            return [SquashCommits(repo, change.commits)]
        case FilePurge():
            return [PurgeFiles(repo, tuple(sha256 for sha256, _ in change.files))]


def _upsert(view: LocalView, entry: ChangeEntry, change: RepoUpsert, repo: str) -> list[Action]:
    if change.home != entry.origin or change.home == view.node_id:
        return []
    actions: list[Action] = []
    state = view.repos.get(repo)
    if state is not None and state.incarnation == change.incarnation:
        return []
    if state is not None and state.home != change.home:
        # Two nodes made repos of the same id: the one here is never replaced or hidden; the
        # peer's is held under its qualified id, if that is free.
        local = qualified_key(entry.repo, change.home)
        if local in view.repos:
            return [Collide(entry.repo, change.home, change.incarnation, None)]
        view.aliases[(entry.repo, change.home)] = local
        actions += [
            Collide(entry.repo, change.home, change.incarnation, local),
            AliasRepo(entry.repo, change.home, local),
        ]
        repo, state = local, None
    if state is not None:  # an older incarnation whose delete we never saw
        view.tombstones.add((repo, state.incarnation))
        actions.append(DeleteRepo(repo, state.incarnation))
    view.repos[repo] = RepoState(change.incarnation, change.home)
    actions.append(
        CreateRepo(repo, change.incarnation, change.home, entry.private, change.created_ms)
    )
    return actions


def _move(
    view: LocalView, entry: ChangeEntry, change: RepoMove, repo: str, state: RepoState
) -> list[Action]:
    """The repo takes its new id here too; if a repo homed elsewhere holds that id here, it
    takes the qualified id, or keeps its own if that is taken as well. Either way the home's
    later entries, which name the new key, reach it."""
    local = change.to
    held = view.repos.get(local)
    if held is not None and held is not state:
        local = qualified_key(change.to, entry.origin)
        if local in view.repos and view.repos[local] is not state:
            local = repo
    view.aliases = {k: v for k, v in view.aliases.items() if v != repo}
    if local != change.to:
        view.aliases[(change.to, entry.origin)] = local
    del view.repos[repo]
    view.repos[local] = state
    return [MoveRepo(repo, local, change.to, entry.origin)]


def _add_commit(view: LocalView, repo: str, change: CommitAdd) -> list[Action]:
    if change.id in view.commits:
        return []
    view.commits.add(change.id)
    return [AddCommit(repo, change)]


def _set_ref(view: LocalView, state: RepoState, repo: str, change: RefSet) -> list[Action]:
    if change.version <= state.refs.get(change.ref, 0) or change.commit not in view.commits:
        return []
    state.refs[change.ref] = change.version
    return [SetRef(repo, change.ref, change.commit, change.version)]


def _delete_ref(state: RepoState, repo: str, change: RefDelete) -> list[Action]:
    if change.version <= state.refs.get(change.ref, 0):
        return []
    state.refs[change.ref] = change.version
    return [DeleteRef(repo, change.ref, change.version)]
