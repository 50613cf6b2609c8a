"""Applies planned replication actions, with the peer's cursor, in one transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.domain.changes import (
    Change,
    ChangeEntry,
    CommitAdd,
    RefDelete,
    RefSet,
    RepoMove,
    RepoUpsert,
    UnknownChange,
    XetFileAdd,
)
from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import InvalidError
from registry.domain.names import RepoId, RepoType, qualified_key
from registry.domain.records import CommitRecord, RepoRecord, TreeFile, XetFileRecord
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
    FeedPosition,
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
from registry.metadata.commits import carried
from registry.metadata.db import Database
from registry.metadata.repos import NewRepo
from registry.metadata.tx import Tx
from registry.service.cache import ReadCache
from registry.service.identity import NodeIdentity
from registry.service.settings import apply_settings
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
MAX_SERIAL = 2**63 - 1
COLLISION = "collision:"  # node values: "collision:<repo key>|<the other repo's home>"
Planner = Callable[[LocalView, list[ChangeEntry]], list[Action]]
Paths = dict[str, tuple[str, str]]  # a commit's tree: path -> (BLAKE3 hex, last commit)
# actions that read no commit, tree, ref, repo time or log entry and log nothing of their own:
# what the batch wrote need not be written before them
_NEEDS_NO_WRITES = (AddCommit, SetRef, Record, CreateRepo, Collide, AliasRepo)


class ReplicationService:
    def __init__(
        self, db: Database, blobs: BlobStore, node: NodeIdentity, cache: ReadCache
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._node = node
        self._cache = cache  # its trees go when a rewrite takes files out of stored commits

    def apply(
        self,
        peer_id: str,
        entries: list[ChangeEntry],
        page: FeedPosition,
        planner: Planner,
    ) -> list[tuple[Digest, int]]:
        """Plan and apply a batch, then move the peer's cursor, atomically. An entry of a
        history its origin abandoned sets aside what this node holds of the old one first
        (`Abandon`), then the rest is planned again.

        Returns the blobs (digest, size) the new commits reference that are not stored here
        (for a file with a Xet recipe, its xorbs not stored here).
        """
        with self._db.write() as tx:
            if not tx.peers.exists(peer_id):
                return []  # removed while pulling
            known, rewrote, applied = self._rounds(tx, entries, planner)
            wanted = known.wanted
            if rewrote:  # what a later squash or purge of the batch took out is not fetched
                named = tx.blobs.named(wanted)
                wanted = {d: size for d, size in wanted.items() if d in named}
            missing = needed(tx, list(wanted.items()))
            stored = tx.blobs.recorded(missing)  # one look for the batch, not one per blob
            tx.peers.advance(peer_id, page.last_serial, page.last_chain, page.head)
        if rewrote:
            self._cache.forget_trees()
        if applied:
            logger.info("applied peer=%s entries=%d cursor=%d", peer_id, applied, page.last_serial)
        return [(d, s) for d, s in missing.items() if d not in stored]

    def apply_in(self, tx: Tx, entries: list[ChangeEntry], planner: Planner) -> None:
        """Plan and apply entries inside the caller's transaction, leaving every cursor alone:
        a snapshot's chunks, made visible together by its one transaction
        (registry.service.snapshot). Blobs are left to `missing_blobs`, derived from state."""
        if self._rounds(tx, entries, planner)[1]:
            self._cache.forget_trees()

    def _rounds(
        self, tx: Tx, entries: list[ChangeEntry], planner: Planner
    ) -> tuple[_Known, bool, int]:
        """Plan and execute a batch in `tx`: (what it knows and wants, whether a squash or purge
        took files out of stored commits, how many entries it recorded). An entry of a history
        its origin abandoned sets aside what this node holds of the old one first (`Abandon`),
        then the rest is planned again."""
        known = _Known()
        rewrote = False
        applied = 0
        self._adopt_chains(tx, entries)
        set_aside = tx.changes.abandoned()  # origins with entries a commit may bring back
        remaining = entries
        for _ in range(len(entries) + 1):  # each round sets aside one history at least
            view, known.repos = self._view(tx, remaining)
            actions = planner(view, remaining)
            known.read_parents(tx, actions)
            known.make_repos(tx, actions)
            for action in actions:
                self._execute(tx, action, known)
                if isinstance(action, SquashCommits | PurgeFiles):
                    rewrote = True
                    known.trees.clear()  # the trees read or written may have lost files
                if isinstance(action, Record) and action.entry.origin in set_aside:
                    known.write(tx)
                    _bring_back(tx, action.entry)
            known.write(tx)
            applied += sum(1 for a in actions if isinstance(a, Record))
            last = actions[-1] if actions else None
            if not isinstance(last, Abandon):
                break
            done = {
                (a.entry.origin, a.entry.origin_serial) for a in actions if isinstance(a, Record)
            }
            remaining = [e for e in remaining if (e.origin, e.origin_serial) not in done]
        return known, rewrote, applied

    def set_aside(self, origin: str) -> int:
        """How many entries of the origin's abandoned history this node keeps, not recovered."""
        with self._db.read() as tx:
            return tx.changes.abandoned().get(origin, 0)

    def chains(self, origin: str) -> list[tuple[int, str]]:
        """(origin serial, chain) of the origin's entries held here, oldest first: where to
        look for the last entry this node shares with a diverged peer."""
        with self._db.read() as tx:
            return tx.changes.chains(origin, MAX_SERIAL)

    def rewind(
        self,
        peer_id: str,
        origin: str,
        after: int,
        cursor: int,
        chain: str | None,
        head: int,
        epoch: str,
    ) -> int:
        """A peer's history diverged from what was read of it after its own entry `after`, the
        last one both share: set aside the entries of its old history held here, and read on
        from `cursor` (whose entry has `chain`) in its `epoch`. Returns how many were set
        aside."""
        with self._db.write() as tx:
            if not tx.peers.exists(peer_id):
                return 0
            set_aside = abandon(tx, origin, after)
            tx.peers.rewind(peer_id, cursor, chain, head, epoch)
        return set_aside

    def _adopt_chains(self, tx: Tx, entries: list[ChangeEntry]) -> None:
        """Entries held here from before chains were kept take the chain they come with."""
        held = tx.changes.applied((e.origin, e.origin_serial) for e in entries)
        for entry in entries:
            key = (entry.origin, entry.origin_serial)
            if key in held and held[key] is None and entry.chain is not None:
                tx.changes.set_chain(entry.origin, entry.origin_serial, entry.chain)

    def missing_blobs(self, limit: int = 1000) -> list[tuple[Digest, int]]:
        """Blobs some commit references that are not stored here: the durable to-do list of
        eager replication (derived from state, so a crash loses none of it). For a file
        uploaded through Xet, the xorbs it lacks instead."""
        with self._db.read() as tx:
            return list(needed(tx, tx.blobs.missing(limit)).items())

    def _view(
        self, tx: Tx, entries: list[ChangeEntry]
    ) -> tuple[LocalView, dict[str, RepoRecord | None]]:
        """What the planner needs to know of the batch's repos, commits and entries, each kind
        looked up in one statement; with the repos found (None: not held), which the actions
        use without reading them again."""
        applied = tx.changes.applied((e.origin, e.origin_serial) for e in entries)
        aliases = tx.repos.aliases((e.repo, e.origin) for e in entries)
        keys = {aliases.get((e.repo, e.origin), e.repo) for e in entries}
        # where a peer's repo would go if its id is held here for another home
        keys |= {qualified_key(e.repo, e.origin) for e in entries if e.kind == RepoUpsert.KIND}
        # where a peer's moved repo goes: its new key, or that key qualified if it is taken
        moves = [(e.body.get("to"), e.origin) for e in entries if e.kind == RepoMove.KIND]
        keys |= {
            key
            for to, home in moves
            if isinstance(to, str) and to.count("/") == 2  # else undecodable: not applied
            for key in (to, qualified_key(to, home))
        }
        found = tx.repos.by_keys(keys)
        refs = tx.refs.versions(repo.id for repo in found.values())
        states = {
            key: RepoState(repo.incarnation, repo.home_node, refs[repo.id])
            for key, repo in found.items()
        }
        wanted = {str(e.body.get(k)) for e in entries for k in ("id", "commit") if e.body.get(k)}
        commits = tx.commits.existing(wanted)
        tombstones = tx.repos.tombstones(keys)
        view = LocalView(self._node.node_id, applied, states, commits, tombstones, aliases)
        return view, {key: found.get(key) for key in keys}

    def _execute(self, tx: Tx, action: Action, known: _Known) -> None:
        if not isinstance(action, _NEEDS_NO_WRITES):
            known.write(tx)
        repos = known.repos
        if isinstance(action, CreateRepo | DeleteRepo):
            repos.pop(action.repo, None)
        elif isinstance(action, MoveRepo):
            repos.pop(action.repo, None)
            repos.pop(action.to, None)
        elif not isinstance(action, Record | Abandon | Collide | AliasRepo) and (
            action.repo not in repos
        ):
            repos[action.repo] = tx.repos.by_key(action.repo)
        match action:
            case CreateRepo():
                made = known.made.pop(action.repo, None)
                if made is None:
                    made = tx.repos.create_many([new_repo(action)])[action.repo]
                tx.refs.none_yet(made.id)
                repos[action.repo] = made
            case DeleteRepo():
                tx.repos.tombstone(action.repo, action.incarnation)
                found = tx.repos.by_key(action.repo)
                if found is not None and found.incarnation == action.incarnation:
                    tx.repos.delete(found.id)
            case MoveRepo():
                move_repo(tx, action)
            case AddCommit():
                self._add_commit(tx, action, known)
            case AddXetFile():
                if repos[action.repo] is not None:
                    add_xet_file(tx, action.file)
            case KeepDiscussion():
                found = repos[action.repo]
                if found is not None:
                    d, event = action.change.discussion, action.change.event
                    tx.discussions.put(found.id, d)
                    tx.discussions.put_event(found.id, d.num, event)
            case SetRef():
                found = repos[action.repo]
                if found is not None:
                    known.refs[(found.id, action.ref)] = (action.commit, action.version)
                    known.saw(found.id, ref_version=action.version)
            case DeleteRef():
                found = repos[action.repo]
                if found is not None:
                    tx.refs.delete(found.id, action.ref)
            case SquashCommits():
                found = repos[action.repo]
                if found is not None:
                    dropped = tx.purges.squash_away(found.id, action.commits, now_ms())
                    logger.info("squash applied repo=%s dropped=%d", action.repo, dropped)
            case PurgeFiles():
                found = repos[action.repo]
                if found is not None:
                    gone = tx.purges.purge(found.id, action.sha256s, now_ms())
                    logger.info("purge applied repo=%s entries=%d", action.repo, gone.entries)
            case SetRepoSettings():
                found = repos.pop(action.repo)
                if found is not None:
                    logged = tx.repos.alias_of(found.key)
                    apply_settings(
                        tx,
                        found,
                        private=action.private,
                        gated=action.gated,
                        logged_as=logged[0] if logged else found.key,
                    )
            case Collide():
                value = {"local": action.local, "since_ms": now_ms()}
                tx.values.setdefault(f"{COLLISION}{action.repo}|{action.home}", json.dumps(value))
            case AliasRepo():
                tx.repos.add_alias(action.repo, action.home, action.local)
            case Abandon():
                abandon(tx, action.origin, action.after)
            case Record():
                known.records.append((action.entry, action.mirrored))

    def _add_commit(self, tx: Tx, action: AddCommit, known: _Known) -> None:
        repo = known.repos[action.repo]
        if repo is None:
            return
        c = action.commit
        known.wanted.update((e.blake3, e.size) for e in c.tree)
        parent = known.trees.get(c.parent) if c.parent else {}
        if parent is None:  # not held before the batch, nor added by it: a single look
            parent = tx.commits.paths_of([c.parent])[c.parent] if c.parent else {}
        record, files = commit_rows(repo, c, parent)
        known.commits.append((record, files))
        known.trees[c.id] = {f.entry.path: (f.entry.blake3.hex, f.last_commit) for f in files}
        known.saw(repo.id, updated_ms=c.created_ms)


def new_repo(action: CreateRepo) -> NewRepo:
    kind, namespace, name = action.repo.split("/")
    repo = RepoId.parse(RepoType(kind), namespace, name)  # names we would refuse
    return NewRepo(repo, action.private, action.home, action.incarnation, action.created_ms)


def move_repo(tx: Tx, action: MoveRepo) -> None:
    """Rename a peer's repo held here as its home did (its old id redirects to it), and let
    the home's entries naming its new key reach it."""
    found = tx.repos.by_key(action.repo)
    if found is None:
        return
    if action.to != action.repo:
        kind, namespace, name = action.to.split("/")
        tx.repos.move(found.id, RepoId.parse(RepoType(kind), namespace, name))
    tx.repos.drop_aliases(action.repo)
    if action.to != action.key:
        tx.repos.add_alias(action.key, action.home, action.to)
        logger.warning(
            "moved repo=%s of home=%s is held here as %s: its id is taken",
            action.key,
            action.home,
            action.to,
        )
    logger.info("repo moved repo=%s to=%s home=%s", action.repo, action.to, action.home)


def store_commit(tx: Tx, repo: RepoRecord, c: CommitAdd) -> None:
    """A commit as its change describes it, each file's last commit carried over from its
    parent's tree where the file is the same."""
    parent = tx.commits.paths_of([c.parent])[c.parent] if c.parent else {}
    tx.commits.add(*commit_rows(repo, c, parent))


def commit_rows(
    repo: RepoRecord, c: CommitAdd, parent: Paths
) -> tuple[CommitRecord, list[TreeFile]]:
    """The commit of a change and its files, given its parent's tree (`parent`)."""
    last = carried(parent, c.tree)
    files = [TreeFile(entry, last.get(entry.path, c.id)) for entry in c.tree]
    record = CommitRecord(c.id, repo.id, c.parent, c.author, c.title, c.message, c.created_ms)
    return record, files


@dataclass
class _Known:
    """What one `apply` has read or written already, so that it reads none of it again."""

    repos: dict[str, RepoRecord | None] = field(default_factory=dict)  # by key; None: not held
    trees: dict[str, Paths] = field(default_factory=dict)  # by commit id
    wanted: dict[Digest, int] = field(default_factory=dict)  # the blobs the new commits name
    # commits and log entries not written yet: each kind goes in one statement, before any
    # action that may read them (or log an entry of its own: serials keep the batch's order)
    commits: list[tuple[CommitRecord, list[TreeFile]]] = field(default_factory=list)
    records: list[tuple[ChangeEntry, str | None]] = field(default_factory=list)
    refs: dict[tuple[int, str], tuple[str, int]] = field(default_factory=dict)  # ref moves
    seen: dict[int, tuple[int, int]] = field(default_factory=dict)  # repo: (updated, version)
    made: dict[str, RepoRecord] = field(default_factory=dict)  # by key, before their CreateRepo

    def saw(self, repo_id: int, *, updated_ms: int = 0, ref_version: int = 0) -> None:
        """A repo changed at `updated_ms`, or a ref move of `ref_version` was applied to it."""
        ms, version = self.seen.get(repo_id, (0, 0))
        self.seen[repo_id] = (max(ms, updated_ms), max(version, ref_version))

    def write(self, tx: Tx) -> None:
        tx.commits.add_many(self.commits)
        tx.refs.set_many(self.refs)
        tx.repos.saw_many(self.seen)
        tx.changes.record_many(self.records)
        self.commits, self.records, self.refs, self.seen = [], [], {}, {}

    def make_repos(self, tx: Tx, actions: list[Action]) -> None:
        """The repos the actions create, in one statement, before any action runs: those whose
        key no earlier action of theirs deletes, moves or creates (those are made in turn)."""
        taken: set[str] = set()
        new = []
        for action in actions:
            if isinstance(action, CreateRepo) and action.repo not in taken:
                new.append(new_repo(action))
            if isinstance(action, CreateRepo | DeleteRepo):
                taken.add(action.repo)
            elif isinstance(action, MoveRepo):
                taken |= {action.repo, action.to}
        self.made = tx.repos.create_many(new)

    def read_parents(self, tx: Tx, actions: list[Action]) -> None:
        """The trees of the parents of the commits to add, in one statement: those held here
        from before the batch (a parent the batch adds is known once it is stored)."""
        adding = [a.commit for a in actions if isinstance(a, AddCommit)]
        ids = {c.id for c in adding}
        parents = {c.parent for c in adding if c.parent and c.parent not in ids}
        self.trees.update(tx.commits.paths_of(parents - self.trees.keys()))


@dataclass(frozen=True)
class Collision:
    """A peer's repo with the id of a repo held here for another home."""

    repo: str  # type/namespace/name, at its home
    home: str  # its home node
    local: str | None  # the id it is held under here (None: that one was taken too)
    since_ms: int


def collisions(tx: Tx) -> list[Collision]:
    found = []
    for key, text in sorted(tx.values.with_prefix(COLLISION).items()):
        repo, _, home = key.removeprefix(COLLISION).rpartition("|")
        value = json.loads(text)
        found.append(Collision(repo, home, value.get("local"), int(value["since_ms"])))
    return found


def abandon(tx: Tx, origin: str, after: int) -> int:
    """Set aside the origin's entries held here past origin serial `after`: a history it no
    longer has (restored from a backup). They stay in the log, marked, with the commits and
    blobs they name (what `modelyard recover` hands back); the refs they moved on repos homed
    on the origin go back to where the origin's last kept entry put them. Returns how many
    were set aside."""
    entries = tx.changes.abandon(origin, after)
    moved: dict[str, set[str]] = {}
    for entry in entries:
        change = _decoded(entry)
        if isinstance(change, RefSet | RefDelete):
            moved.setdefault(entry.repo, set()).add(change.ref)
    aliases = tx.repos.aliases((key, origin) for key in moved)
    for key, refs in moved.items():
        repo = tx.repos.by_key(aliases.get((key, origin), key))
        if repo is not None and repo.home_node == origin:
            _restore_refs(tx, origin, key, repo, refs)
    if entries:
        logger.warning(
            "history of origin=%s diverged after serial %d: %d entries set aside",
            origin,
            after,
            len(entries),
        )
    return len(entries)


def _bring_back(tx: Tx, entry: ChangeEntry) -> None:
    """A commit its origin lost in a restore came back (`modelyard recover`)."""
    change = _decoded(entry)
    if isinstance(change, CommitAdd):
        tx.changes.recovered(entry.origin, entry.repo, change.id)


def _restore_refs(tx: Tx, origin: str, key: str, repo: RepoRecord, refs: set[str]) -> None:
    """Put each ref where the origin's newest kept entry about it put it (gone if none); the
    entries name the repo by `key`, its key at its home (it may be held here under another)."""
    kept = tx.changes.latest(origin, key, (RefSet.KIND, RefDelete.KIND))
    for name in refs:
        latest = next(
            (
                c
                for c in map(_decoded, kept)
                if isinstance(c, RefSet | RefDelete)
                and c.ref == name
                and c.incarnation == repo.incarnation
            ),
            None,
        )
        if isinstance(latest, RefSet) and tx.commits.existing({latest.commit}):
            tx.refs.set(repo.id, name, latest.commit, latest.version)
        else:
            tx.refs.delete(repo.id, name)


def _decoded(entry: ChangeEntry) -> Change | UnknownChange | None:
    try:
        return entry.change()
    except InvalidError:
        return None


def add_xet_file(tx: Tx, change: XetFileAdd) -> None:
    """Keep a replicated file's recipe; a file whose xorbs are all here already (a new
    version sharing every chunk with an old one) is a blob here at once."""
    record = XetFileRecord(change.file, change.blake3, change.sha256, change.size, change.terms)
    tx.xet.add_file(record, change.xorbs)
    if not tx.xet.missing_xorbs(change.file):
        tx.blobs.record(change.blake3, change.sha256, change.size, None)


def needed(tx: Tx, blobs: list[tuple[Digest, int]]) -> dict[Digest, int]:
    """What to fetch for these blobs: each one itself, or for a file with a Xet recipe here
    the xorbs of it this node lacks (so a new version moves only its new chunks)."""
    files = tx.xet.files_of(d for d, _ in blobs)
    wanted: dict[Digest, int] = {}
    for digest, size in blobs:
        file = files.get(digest)
        if file is None:
            wanted[digest] = size
            continue
        wanted.update((x.blake3, x.size) for x in tx.xet.missing_xorbs(file.hash))
    return wanted
