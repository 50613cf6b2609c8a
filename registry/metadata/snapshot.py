"""Bulk reads and writes for snapshots: the log up to a serial, the replicable state in one
pass, and the rows a snapshot loads into an empty node (plain Core statements, many rows each:
a snapshot is state, and ORM objects cost ~10x more per row)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import BigInteger, Integer, bindparam, case, delete, insert, update
from sqlmodel import Session, col, func, select

from registry.domain.access import Principal
from registry.domain.changes import ChangeEntry
from registry.domain.names import RepoId
from registry.metadata.repos import visible_to
from registry.metadata.tables import Change as ChangeRow
from registry.metadata.tables import Commit, Ref, Repo

ROWS = 2000  # rows fetched at a time from the driver


@dataclass(frozen=True)
class RepoState:
    """What replicates of a repo: who it is, where it lives, what it shows."""

    key: str
    home: str
    incarnation: str
    private: bool
    gated: str | None
    refs: tuple[tuple[str, str, int], ...]  # (name, commit, home version), by name
    commits: tuple[str, ...]  # ids, sorted


@dataclass(frozen=True)
class NewRepo:
    """A repo a snapshot makes, as `Repos.create` would make it."""

    repo: RepoId
    private: bool
    home: str
    incarnation: str
    created_ms: int


class SnapshotReads:
    def __init__(self, session: Session) -> None:
        self._session = session

    def empty(self) -> bool:
        """Whether the node holds nothing replicable yet: no log entry and no repo."""
        logged = self._session.exec(select(func.count()).select_from(ChangeRow)).one()
        repos = self._session.exec(select(func.count()).select_from(Repo)).one()
        return logged == 0 and repos == 0

    def add_repos(self, repos: Iterable[NewRepo]) -> dict[str, int]:
        """Make the repos (none of whose ids is held); returns their row ids by key."""
        rows = [
            {
                "type": r.repo.type.value,
                "namespace": r.repo.namespace,
                "name": r.repo.name,
                "private": r.private,
                "home_node": r.home,
                "incarnation": r.incarnation,
                "created_ms": r.created_ms,
                "updated_ms": r.created_ms,
                "ref_version": 0,
                "pr_count": 0,
                "downloads": 0,
            }
            for r in repos
        ]
        if not rows:
            return {}
        # Ids only grow, and no other transaction makes repos while this one writes.
        before = self._session.exec(select(func.max(Repo.id))).one() or 0
        self._session.connection().execute(insert(Repo), rows)
        made = self._session.exec(
            select(Repo.type, Repo.namespace, Repo.name, Repo.id).where(col(Repo.id) > before)
        )
        return {f"{t}/{ns}/{n}": rid for t, ns, n, rid in made if rid is not None}

    def raise_repo_marks(self, marks: Mapping[int, tuple[int, int]]) -> None:
        """Per repo id, (updated time, ref version) it has reached: each only goes up (as
        `Repos.touch` and `Repos.saw_ref_version`)."""
        if not marks:
            return
        updated, version = (
            bindparam("updated", type_=BigInteger),
            bindparam("version", type_=Integer),
        )
        statement = (
            update(Repo)
            .where(col(Repo.id) == bindparam("rid"))
            .values(
                updated_ms=case((col(Repo.updated_ms) < updated, updated), else_=Repo.updated_ms),
                ref_version=case(
                    (col(Repo.ref_version) < version, version), else_=Repo.ref_version
                ),
            )
        )
        rows = [{"rid": r, "updated": u, "version": v} for r, (u, v) in marks.items()]
        self._session.connection().execute(statement, rows)

    def put_refs(self, refs: Mapping[tuple[int, str], tuple[str, int] | None]) -> None:
        """Set each (repo id, ref name) to (commit, version), or delete it (None)."""
        if not refs:
            return
        gone = [{"rid": r, "ref": name} for r, name in refs]
        self._session.connection().execute(
            delete(Ref).where(
                col(Ref.repo_id) == bindparam("rid"), col(Ref.name) == bindparam("ref")
            ),
            gone,
        )
        rows = [
            {"repo_id": r, "name": name, "commit_id": to[0], "version": to[1]}
            for (r, name), to in refs.items()
            if to is not None
        ]
        if rows:
            self._session.connection().execute(insert(Ref), rows)

    def entries(
        self, after: int, upto: int, limit: int, kinds: tuple[str, ...] | None = None
    ) -> list[ChangeEntry]:
        """Up to `limit` entries with `after < serial <= upto` (of `kinds` only, if given), in
        order, abandoned ones left out (as the feed leaves them out). Plain rows: a snapshot
        reads the log twice."""
        c = ChangeRow
        columns = (c.serial, c.origin, c.origin_serial, c.kind, c.repo, c.private, c.body)
        rows: Sequence[Any] = (
            self._session.connection()
            .execute(
                sqlalchemy.select(*(col(x) for x in (*columns, c.created_ms, c.chain)))
                .where(col(c.serial) > after, col(c.serial) <= upto, col(c.abandoned_ms).is_(None))
                .where(col(c.kind).in_(kinds) if kinds is not None else sqlalchemy.true())
                .order_by(col(c.serial))
                .limit(limit)
            )
            .all()
        )
        return [
            ChangeEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    def state(self, principal: Principal) -> Iterator[RepoState]:
        """Every repo the reader may see, by key, with its refs and commits."""
        refs: dict[int, list[tuple[str, str, int]]] = {}
        for ref in self._session.exec(select(Ref).order_by(col(Ref.name))):
            refs.setdefault(ref.repo_id, []).append((ref.name, ref.commit_id, ref.version))
        commits: dict[int, list[str]] = {}
        for repo_id, commit_id in self._session.exec(
            select(Commit.repo_id, Commit.id).order_by(col(Commit.id))
        ):
            commits.setdefault(repo_id, []).append(commit_id)
        repos = self._session.exec(select(Repo).where(visible_to(principal)))
        for row in sorted(repos, key=lambda r: (r.type, r.namespace, r.name)):
            assert row.id is not None, "a stored row"
            yield RepoState(
                f"{row.type}/{row.namespace}/{row.name}",
                row.home_node,
                row.incarnation,
                row.private,
                row.gated,
                tuple(refs.get(row.id, ())),
                tuple(commits.get(row.id, ())),
            )
