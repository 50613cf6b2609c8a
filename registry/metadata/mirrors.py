"""Mirrors, their push outbox, and which remote commit carries one of ours."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert
from sqlmodel import Session, col, select

from registry.domain.changes import MIRRORED_KINDS, Change, UnknownChange, decode
from registry.domain.clock import now_ms
from registry.domain.patterns import covers
from registry.metadata.tables import Change as ChangeRow
from registry.metadata.tables import Mirror, MirrorCommit, MirrorOutbox, MirrorRollback


@dataclass(frozen=True)
class MirrorRecord:
    name: str
    kind: str  # hf | s3 | node
    url: str | None  # None for `hf`: huggingface_hub's own default
    # The token as stored (sealed when the node has a credentials key): opaque here.
    stored_token: str | None = field(repr=False)
    repos: str  # glob over namespace/name
    pushed: int  # outbox rows completed
    last_success_ms: int | None
    last_error: str | None
    last_error_ms: int | None

    @property
    def token_set(self) -> bool:
        return bool(self.stored_token)


@dataclass(frozen=True)
class Backlog:
    count: int  # outbox rows waiting
    oldest_ms: int | None  # when the oldest waiting change was logged


@dataclass(frozen=True)
class RollbackRecord:
    """A ref a push moved back past a commit this node no longer holds; `kept_as` is the
    mirror's branch that still points where the ref did."""

    repo: str  # repo key: model/namespace/name
    ref: str
    lost_commit: str
    new_commit: str | None  # None: the push deleted the ref
    kept_as: str
    at_ms: int


@dataclass(frozen=True)
class OutboxItem:
    """An outbox row with what its change-log entry says."""

    mirror: str
    serial: int
    repo: str  # repo key: model/namespace/name
    kind: str
    body: dict[str, Any]
    attempts: int
    next_ms: int

    def change(self) -> Change | UnknownChange:
        """The typed change; raises InvalidError for a body its kind cannot have.

        Decoded when the row is pushed, not when it is read: a body a peer sent malformed (and
        this node recorded as it came) fails its own row, which backs off like any failed push,
        rather than the reading of the whole batch.
        """
        return decode(self.kind, self.body)


def _record(row: Mirror) -> MirrorRecord:
    return MirrorRecord(
        row.name,
        row.kind,
        row.url,
        row.token,
        row.repos,
        row.pushed,
        row.last_success_ms,
        row.last_error,
        row.last_error_ms,
    )


class Mirrors:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._globs: list[tuple[str, str]] | None = None  # (name, repos), read once

    def enqueue(self, serial: int, kind: str, repo_key: str, *, private: bool) -> None:
        """A change was logged: one outbox row per mirror covering its repo, if it is worth
        pushing. Private repos never leave the node through a mirror."""
        if kind not in MIRRORED_KINDS or private:
            return
        if self._globs is None:
            self._globs = [(m.name, m.repos) for m in self._session.exec(select(Mirror)).all()]
        for name, glob in self._globs:
            if covers(glob, repo_key):
                self._session.add(
                    MirrorOutbox(mirror=name, serial=serial, repo=repo_key, kind=kind)
                )

    def drop_pending(self, repo_key: str) -> None:
        """Forget every change of a repo still to push (it was made private)."""
        self._session.execute(delete(MirrorOutbox).where(col(MirrorOutbox.repo) == repo_key))

    def exists(self, name: str) -> bool:
        return self._session.get(Mirror, name) is not None

    def get(self, name: str) -> MirrorRecord | None:
        row = self._session.get(Mirror, name)
        return None if row is None else _record(row)

    def all(self) -> list[MirrorRecord]:
        """Every mirror, by name."""
        rows = self._session.exec(select(Mirror).order_by(col(Mirror.name))).all()
        return [_record(m) for m in rows]

    def add(
        self, name: str, kind: str, url: str | None, stored_token: str | None, repos: str
    ) -> int:
        """Configure a mirror and enqueue what its repos hold already (every logged change
        worth pushing, of public repos); returns how many outbox rows that made."""
        self._session.add(
            Mirror(
                name=name,
                kind=kind,
                url=url,
                token=stored_token,
                repos=repos,
                created_ms=now_ms(),
            )
        )
        self._globs = None  # later changes of this transaction go to the new mirror too
        backlog = self._session.exec(
            select(ChangeRow.serial, ChangeRow.repo, ChangeRow.kind)
            .where(
                col(ChangeRow.kind).in_(MIRRORED_KINDS),
                col(ChangeRow.private).is_(False),
                col(ChangeRow.abandoned_ms).is_(None),
            )
            .order_by(col(ChangeRow.serial))
        ).all()
        rows = [
            {"mirror": name, "serial": s, "repo": r, "kind": k}
            for s, r, k in backlog
            if covers(repos, r)
        ]
        if rows:
            self._session.execute(insert(MirrorOutbox), rows)
        return len(rows)

    def remove(self, name: str) -> None:
        """Forget a mirror with its outbox, remote commits and roll-backs."""
        self._session.execute(delete(MirrorOutbox).where(col(MirrorOutbox.mirror) == name))
        self._session.execute(delete(MirrorCommit).where(col(MirrorCommit.mirror) == name))
        self._session.execute(delete(MirrorRollback).where(col(MirrorRollback.mirror) == name))
        self._session.execute(delete(Mirror).where(col(Mirror.name) == name))
        self._globs = None

    def set_token(self, name: str, stored_token: str) -> None:
        row = self._session.get(Mirror, name)
        assert row is not None, "the caller saw it in this transaction"
        row.token = stored_token
        self._session.add(row)

    def backlog(self, name: str) -> Backlog:
        count, oldest = self._session.exec(
            select(func.count(), func.min(ChangeRow.created_ms))
            .select_from(MirrorOutbox)
            .join(ChangeRow, col(ChangeRow.serial) == col(MirrorOutbox.serial), isouter=True)
            .where(MirrorOutbox.mirror == name)
        ).one()
        return Backlog(int(count or 0), int(oldest) if oldest is not None else None)

    def next_items(self, mirror: str, limit: int) -> list[OutboxItem]:
        """The oldest outbox rows of a mirror, with what each change says (serial order)."""
        rows = self._session.exec(
            select(MirrorOutbox, ChangeRow)
            .join(ChangeRow, col(ChangeRow.serial) == col(MirrorOutbox.serial), isouter=True)
            .where(MirrorOutbox.mirror == mirror)
            .order_by(col(MirrorOutbox.serial))
            .limit(limit)
        ).all()
        return [
            OutboxItem(
                mirror,
                row.serial,
                row.repo,
                row.kind,
                json.loads(change.body) if change is not None else {},
                row.attempts,
                row.next_ms,
            )
            for row, change in rows
        ]

    def done(self, mirror: str, serial: int) -> None:
        """A row was pushed: drop it and count it on the mirror, once (another process of the
        node may have pushed and counted it too)."""
        row = self._session.get(MirrorOutbox, (mirror, serial))
        if row is None:
            return
        self._session.delete(row)
        config = self._session.get(Mirror, mirror)
        if config is not None:
            config.pushed += 1
            config.last_success_ms = now_ms()
            self._session.add(config)

    def failed(self, mirror: str, serial: int, error: str, next_ms: int) -> None:
        """A push of a row failed with `error`: the row is not tried again before `next_ms`."""
        row = self._session.get(MirrorOutbox, (mirror, serial))
        if row is not None:
            row.attempts += 1
            row.next_ms = next_ms
            row.last_error = error
            self._session.add(row)
        config = self._session.get(Mirror, mirror)
        if config is not None:
            config.last_error, config.last_error_ms = error, now_ms()
            self._session.add(config)

    def remote_commit(self, mirror: str, commit_id: str) -> str | None:
        """The commit on `mirror` that carries our `commit_id`, if one was recorded."""
        row = self._session.get(MirrorCommit, (mirror, commit_id))
        return row.remote_id if row else None

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None:
        """Remember which remote commit carries ours (the first one recorded stays)."""
        if self._session.get(MirrorCommit, (mirror, commit_id)) is None:
            self._session.add(MirrorCommit(mirror=mirror, commit_id=commit_id, remote_id=remote_id))

    def local_commit(self, mirror: str, remote_id: str) -> str | None:
        """One of ours that the remote commit carries, if one was recorded."""
        return self._session.exec(
            select(MirrorCommit.commit_id)
            .where(MirrorCommit.mirror == mirror, MirrorCommit.remote_id == remote_id)
            .limit(1)
        ).first()

    def rolled_back(self, mirror: str, record: RollbackRecord) -> None:
        """Record a roll-back (once: a push retried after a crash records the same one)."""
        key = (mirror, record.repo, record.ref, record.lost_commit)
        row = self._session.get(MirrorRollback, key)
        if row is None:
            row = MirrorRollback(
                mirror=mirror,
                repo=record.repo,
                ref=record.ref,
                lost_commit=record.lost_commit,
                kept_as=record.kept_as,
                at_ms=record.at_ms,
            )
        row.new_commit, row.kept_as, row.at_ms = record.new_commit, record.kept_as, record.at_ms
        self._session.add(row)

    def rollbacks(self, mirror: str, limit: int) -> tuple[int, list[RollbackRecord]]:
        """How many roll-backs the mirror saw, and the newest `limit` of them."""
        where = MirrorRollback.mirror == mirror
        count = self._session.exec(select(func.count()).select_from(MirrorRollback).where(where))
        rows = self._session.exec(
            select(MirrorRollback)
            .where(where)
            .order_by(col(MirrorRollback.at_ms).desc())
            .limit(limit)
        ).all()
        records = [
            RollbackRecord(r.repo, r.ref, r.lost_commit, r.new_commit, r.kept_as, r.at_ms)
            for r in rows
        ]
        return int(count.one()), records
