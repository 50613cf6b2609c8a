"""Repos, the ids moved repos had (redirects), and the tombstones of deleted ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy
from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    true,
    tuple_,
    update,
)
from sqlmodel import Session, col, select

from registry.domain.access import Principal
from registry.domain.clock import now_ms
from registry.domain.names import RepoId, RepoType
from registry.domain.records import RepoRecord
from registry.metadata.tables import (
    AccessRequest,
    Commit,
    Discussion,
    DiscussionEvent,
    Ref,
    Repo,
    RepoAlias,
    RepoRedirect,
    Tombstone,
    TreeRow,
)


@dataclass(frozen=True)
class Redirect:
    """An id a repo had before it moved: `old` (a key, type/namespace/name), the repo now."""

    old: str
    repo: RepoRecord
    moved_ms: int


def record_of(row: Repo) -> RepoRecord:
    assert row.id is not None, "rows are flushed before they are read back"
    return RepoRecord(
        row.id,
        RepoId(RepoType(row.type), row.namespace, row.name),
        row.private,
        row.home_node,
        row.incarnation,
        row.created_ms,
        row.updated_ms,
        row.ref_version,
        row.pr_count,
        row.downloads,
        row.gated,
    )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The SQL condition for repos a reader may see (public, their own and their orgs', all
    for the admin): `registry.domain.access.may_read` in SQL."""
    if principal.is_admin:
        return true()
    mine = [principal.user, *principal.readable_orgs()] if principal.user else []
    return or_(col(Repo.private).is_(False), col(Repo.namespace).in_(mine))


def past_gate(principal: Principal) -> ColumnElement[bool]:
    """The SQL condition for repos whose files a reader may download: not gated, in a
    namespace they write, their access request accepted, or any for the admin
    (`registry.domain.access.passes_gate` in SQL)."""
    if principal.is_admin:
        return true()
    accepted = select(AccessRequest.repo_id).where(
        AccessRequest.user == principal.user, AccessRequest.status == "accepted"
    )
    return or_(
        col(Repo.gated).is_(None),
        col(Repo.namespace).in_(principal.writable_namespaces()),
        col(Repo.id).in_(accepted),
    )


def _where(repo: RepoId) -> ColumnElement[bool]:
    return (
        (col(Repo.type) == repo.type.value)
        & (col(Repo.namespace) == repo.namespace)
        & (col(Repo.name) == repo.name)
    )


def _where_folded(repo: RepoId) -> ColumnElement[bool]:
    return (
        (col(Repo.type) == repo.type.value)
        & (func.lower(col(Repo.namespace)) == repo.namespace.lower())
        & (func.lower(col(Repo.name)) == repo.name.lower())
    )


# What `by_keys` reads: RepoRecord's fields, in its order.
_COLUMNS = (
    col(Repo.id),
    col(Repo.type),
    col(Repo.namespace),
    col(Repo.name),
    col(Repo.private),
    col(Repo.home_node),
    col(Repo.incarnation),
    col(Repo.created_ms),
    col(Repo.updated_ms),
    col(Repo.ref_version),
    col(Repo.pr_count),
    col(Repo.downloads),
    col(Repo.gated),
)
# One statement for many rows, compiled once (SQLAlchemy's "insertmanyvalues" batches them).
_INSERT = insert(Repo).returning(col(Repo.id), col(Repo.type), col(Repo.namespace), col(Repo.name))


class NewRepo(NamedTuple):
    repo: RepoId
    private: bool
    home: str
    incarnation: str
    created_ms: int


def _values(new: NewRepo) -> dict[str, object]:
    """A new repo's row (every column: the rows of one INSERT must name the same)."""
    return {
        "type": new.repo.type.value,
        "namespace": new.repo.namespace,
        "name": new.repo.name,
        "private": new.private,
        "home_node": new.home,
        "incarnation": new.incarnation,
        "created_ms": new.created_ms,
        "updated_ms": new.created_ms,
        "ref_version": 0,
        "pr_count": 0,
        "downloads": 0,
        "gated": None,
    }


_SAW = (
    update(Repo.__table__)  # type: ignore[attr-defined]
    .where(Repo.__table__.c.id == bindparam("rid"))  # type: ignore[attr-defined]
    .values(
        updated_ms=case(
            (col(Repo.updated_ms) < bindparam("ms"), bindparam("ms")), else_=col(Repo.updated_ms)
        ),
        ref_version=case(
            (col(Repo.ref_version) < bindparam("version"), bindparam("version")),
            else_=col(Repo.ref_version),
        ),
    )
)


class Repos:
    def __init__(self, session: Session) -> None:
        self._session = session
        # Rows this transaction read or made, by id. The session's identity map holds rows
        # weakly: a row read by `find` and then let go is read again (a SELECT, after an
        # autoflush) by the `touch` or `next_ref_version` that follows. Held here, a write
        # after a lookup costs no statement of its own (replica catch-up: one per entry).
        self._held: dict[int, Repo] = {}

    def find(self, repo: RepoId, *, exact: bool = False) -> RepoRecord | None:
        """The repo with this id; ids match whatever their case (`User/Repo` is `user/repo`,
        as on the Hub) unless `exact`. The record holds the id as it was created."""
        row = self._session.exec(select(Repo).where(_where(repo))).first()
        if row is None and not exact:
            # Only a miss pays for the second, case-folded look (ix_repo_folded).
            row = self._session.exec(select(Repo).where(_where_folded(repo))).first()
        return None if row is None else record_of(self._hold(row))

    def by_key(self, key: str) -> RepoRecord | None:
        """The repo of a change-log key (`type/namespace/name`), spelled exactly."""
        kind, namespace, name = key.split("/")
        return self.find(RepoId(RepoType(kind), namespace, name), exact=True)

    def by_keys(self, keys: Iterable[str]) -> dict[str, RepoRecord]:
        """The repos of these change-log keys held here (spelled exactly), a statement per
        thousand: a replica looks up a whole batch's repos at once (three bound values a key;
        SQLite allows 32 766 a statement). Plain columns: row objects cost several times
        more, for thousands of repos a batch."""
        wanted = sorted({tuple(key.split("/")) for key in keys})
        found: dict[str, RepoRecord] = {}
        for start in range(0, len(wanted), 1000):
            rows = self._session.execute(
                sqlalchemy.select(*_COLUMNS).where(
                    tuple_(col(Repo.type), col(Repo.namespace), col(Repo.name)).in_(
                        wanted[start : start + 1000]
                    )
                )
            ).all()
            for repo_id, kind, namespace, name, *rest in rows:
                record = RepoRecord(repo_id, RepoId(RepoType(kind), namespace, name), *rest)
                found[record.key] = record
        return found

    def get(self, repo_id: int) -> RepoRecord | None:
        row = self._lookup(repo_id)
        return None if row is None else record_of(row)

    def visible(self, repo_type: RepoType, principal: Principal) -> list[RepoRecord]:
        """Every repo of a type the reader may see."""
        rows = self._session.exec(
            select(Repo).where(Repo.type == repo_type.value, visible_to(principal))
        ).all()
        return [record_of(r) for r in rows]

    def create(
        self, repo: RepoId, *, private: bool, home: str, incarnation: str, created_ms: int
    ) -> RepoRecord:
        return self.create_many([NewRepo(repo, private, home, incarnation, created_ms)])[repo.key]

    def create_many(self, new: Sequence[NewRepo]) -> dict[str, RepoRecord]:
        """Repos (none of whose ids is taken), by key: an INSERT of plain values for many,
        past the ORM. Its row objects, a flush for each id, and its look through every row
        the session holds for the redirects deleted cost a replica that makes thousands of
        repos a batch more than all the rest of it."""
        if not new:
            return {}
        self._session.flush()  # a delete of a repo of the same id pending goes first
        connection = self._session.connection()
        made: dict[str, RepoRecord] = {}
        for start in range(0, len(new), 1000):  # bound the redirects' IN
            part = new[start : start + 1000]
            keys = [n.repo.key for n in part]
            connection.execute(delete(RepoRedirect).where(col(RepoRedirect.repo).in_(keys)))
            rows = connection.execute(_INSERT, [_values(n) for n in part]).all()
            ids: dict[str, int] = {f"{t}/{ns}/{n}": i for i, t, ns, n in rows if i is not None}
            made |= {
                n.repo.key: RepoRecord(
                    ids[n.repo.key],
                    n.repo,
                    n.private,
                    n.home,
                    n.incarnation,
                    n.created_ms,
                    n.created_ms,
                    0,
                    0,
                    0,
                    None,
                )
                for n in part
            }
        return made

    def move(self, repo_id: int, to: RepoId) -> RepoRecord:
        """Give the repo the id `to`; its old id redirects to it (and `to` no longer redirects
        to whatever it named before)."""
        row = self._row(repo_id)
        old = record_of(row).key
        self._session.execute(delete(RepoRedirect).where(col(RepoRedirect.repo) == to.key))
        row.namespace, row.name = to.namespace, to.name
        self._session.add(row)
        self._session.merge(RepoRedirect(repo=old, repo_id=repo_id, moved_ms=now_ms()))
        self._session.flush()
        return record_of(row)

    def redirect(self, repo: RepoId) -> RepoRecord | None:
        """The repo that had the id `repo` before it was moved (whatever its case)."""
        row = self._session.get(RepoRedirect, repo.key)
        if row is None:  # as `find`: only a miss pays for the case-folded look
            folded = func.lower(col(RepoRedirect.repo)) == repo.key.lower()
            row = self._session.exec(select(RepoRedirect).where(folded)).first()
        return None if row is None else self.get(row.repo_id)

    def redirects(self, limit: int) -> list[Redirect]:
        """The newest `limit` ids that redirect to a moved repo, newest first."""
        rows = self._session.exec(
            select(RepoRedirect, Repo)
            .join(Repo, col(Repo.id) == col(RepoRedirect.repo_id))
            .order_by(col(RepoRedirect.moved_ms).desc())
            .limit(limit)
        ).all()
        return [Redirect(r.repo, record_of(repo), r.moved_ms) for r, repo in rows]

    def moved(self, keys: Iterable[str]) -> dict[str, RepoRecord]:
        """The repos that had these keys (spelled exactly) before they were moved."""
        rows = self._session.exec(
            select(RepoRedirect).where(col(RepoRedirect.repo).in_(set(keys)))
        ).all()
        found = {r.repo: self.get(r.repo_id) for r in rows}
        return {key: repo for key, repo in found.items() if repo is not None}

    def delete(self, repo_id: int) -> None:
        """The repo with its commits, trees, refs and discussions (the blobs stay for gc)."""
        self._session.flush()  # what this transaction changed of them first
        commits = select(Commit.id).where(Commit.repo_id == repo_id)
        self._session.execute(delete(TreeRow).where(col(TreeRow.commit_id).in_(commits)))
        self._session.execute(delete(Commit).where(col(Commit.repo_id) == repo_id))
        self._session.execute(delete(Ref).where(col(Ref.repo_id) == repo_id))
        self._session.execute(delete(RepoRedirect).where(col(RepoRedirect.repo_id) == repo_id))
        self._session.execute(delete(AccessRequest).where(col(AccessRequest.repo_id) == repo_id))
        self._session.execute(
            delete(DiscussionEvent).where(col(DiscussionEvent.repo_id) == repo_id)
        )
        self._session.execute(delete(Discussion).where(col(Discussion.repo_id) == repo_id))
        self._session.delete(self._row(repo_id))
        self._session.flush()
        self._held.pop(repo_id, None)

    def touch(self, repo_id: int, updated_ms: int) -> None:
        """The repo changed at `updated_ms` (its updated time never goes back)."""
        row = self._row(repo_id)
        row.updated_ms = max(row.updated_ms, updated_ms)
        self._session.add(row)

    def set_settings(self, repo_id: int, *, private: bool, gated: str | None) -> None:
        row = self._row(repo_id)
        row.private, row.gated = private, gated
        self._session.add(row)

    def next_ref_version(self, repo_id: int) -> int:
        """The version of the repo's next ref move (one more than the newest)."""
        row = self._row(repo_id)
        row.ref_version += 1
        self._session.add(row)
        return row.ref_version

    def saw_ref_version(self, repo_id: int, version: int) -> None:
        """A replicated ref move of `version` was applied."""
        row = self._row(repo_id)
        row.ref_version = max(row.ref_version, version)
        self._session.add(row)

    def saw_many(self, seen: Mapping[int, tuple[int, int]]) -> None:
        """`touch` and `saw_ref_version` for many repos in one statement: repo id -> (updated
        time, ref version), neither of which goes back (a replica's batch). Rows held here
        read those two again when next used."""
        if not seen:
            return
        self._session.flush()  # what the held rows have pending first: it is not lost below
        self._session.connection().execute(
            _SAW, [{"rid": r, "ms": ms, "version": v} for r, (ms, v) in seen.items()]
        )
        for repo_id in seen.keys() & self._held.keys():
            self._session.expire(self._held[repo_id], ["updated_ms", "ref_version"])

    def next_pr(self, repo_id: int) -> int:
        row = self._row(repo_id)
        row.pr_count += 1
        self._session.add(row)
        return row.pr_count

    def add_downloads(self, counts: Mapping[int, int]) -> None:
        for repo_id, n in counts.items():
            self._session.execute(
                update(Repo)
                .where(col(Repo.id) == repo_id)
                .values(downloads=col(Repo.downloads) + n)
            )

    def aliases(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The local keys of these (repo key at its home, home) pairs held under another id."""
        wanted = set(pairs)
        if not wanted:
            return {}
        rows = self._session.exec(
            select(RepoAlias).where(col(RepoAlias.repo).in_({r for r, _ in wanted}))
        ).all()
        return {(r.repo, r.home): r.local for r in rows if (r.repo, r.home) in wanted}

    def add_alias(self, repo: str, home: str, local: str) -> None:
        self._session.merge(RepoAlias(repo=repo, home=home, local=local))

    def drop_aliases(self, local: str) -> None:
        """No entries of a peer apply to the repo held here as `local` through an alias."""
        self._session.execute(delete(RepoAlias).where(col(RepoAlias.local) == local))

    def alias_of(self, local: str) -> tuple[str, str] | None:
        """(its key at its home, home) of a repo held under another id here."""
        row = self._session.exec(select(RepoAlias).where(RepoAlias.local == local)).first()
        return None if row is None else (row.repo, row.home)

    def tombstone(self, key: str, incarnation: str) -> None:
        """An incarnation of a repo was deleted: entries about it are ignored from now on."""
        self._session.merge(Tombstone(repo=key, incarnation=incarnation))

    def tombstones(self, keys: Iterable[str]) -> set[tuple[str, str]]:
        rows = self._session.exec(
            select(Tombstone.repo, Tombstone.incarnation).where(col(Tombstone.repo).in_(set(keys)))
        ).all()
        return {(repo, incarnation) for repo, incarnation in rows}

    def _row(self, repo_id: int) -> Repo:
        row = self._lookup(repo_id)
        assert row is not None, "the caller read the repo in this transaction"
        return row

    def _lookup(self, repo_id: int) -> Repo | None:
        held = self._held.get(repo_id)
        if held is not None:
            return held
        row = self._session.get(Repo, repo_id)
        return None if row is None else self._hold(row)

    def _hold(self, row: Repo) -> Repo:
        assert row.id is not None, "rows are flushed before they are held"
        self._held[row.id] = row
        return row
