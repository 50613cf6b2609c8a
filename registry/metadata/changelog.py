"""The change log peers pull: append (with the next serial) and read.

Theory of operation: the `serial` counter row is taken with a row lock at the start of each
write transaction on Postgres (`lock`), and under SQLite's `BEGIN IMMEDIATE` write lock, so
serials are gap-free and committed in order. An entry's body is stored as the JSON text it was
written as (`json.dumps(..., sort_keys=True)`) and read back as that object; this module never
re-encodes a body it did not write (see `registry.domain.changes`). An entry worth pushing to
mirrors writes its outbox rows in the same transaction (`Mirrors.enqueue`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import tuple_
from sqlmodel import Session, col, select

from registry.domain.changes import Change, ChangeEntry
from registry.domain.clock import now_ms
from registry.domain.records import RepoRecord
from registry.metadata.mirrors import Mirrors
from registry.metadata.tables import Change as ChangeRow
from registry.metadata.tables import Counter


@dataclass(frozen=True)
class Logged:
    """An entry read from the log, with the length of its stored body (pages are bounded)."""

    entry: ChangeEntry
    size: int


def entry_of(row: ChangeRow) -> ChangeEntry:
    return ChangeEntry(
        row.serial,
        row.origin,
        row.origin_serial,
        row.kind,
        row.repo,
        row.private,
        json.loads(row.body),
        row.created_ms,
    )


class ChangeLog:
    def __init__(self, session: Session, mirrors: Mirrors) -> None:
        self._session = session
        self._mirrors = mirrors
        self._counter: Counter | None = None  # the serial row, once taken in this transaction

    def lock(self) -> None:
        """Take the serial counter's row lock (Postgres: the write lock of the transaction)."""
        self._serial_row()

    def head(self) -> int:
        """The newest serial (0 for an empty log)."""
        counter = self._session.get(Counter, "serial")
        return counter.value if counter else 0

    def append(self, origin: str, repo: RepoRecord, change: Change) -> int:
        """Log a change this node made to `repo`; returns its serial."""
        serial = self._next()
        self._add(serial, origin, serial, change.KIND, repo.key, repo.private, change.body())
        return serial

    def record(self, entry: ChangeEntry) -> int:
        """Log an entry learned from a peer with its origin and body as they came."""
        serial = self._next()
        self._add(
            serial,
            entry.origin,
            entry.origin_serial,
            entry.kind,
            entry.repo,
            entry.private,
            entry.body,
        )
        return serial

    def page(self, since: int, limit: int) -> list[Logged]:
        """Up to `limit` entries after `since`, in serial order."""
        rows = self._session.exec(
            select(ChangeRow)
            .where(col(ChangeRow.serial) > since)
            .order_by(col(ChangeRow.serial))
            .limit(limit)
        ).all()
        return [Logged(entry_of(r), len(r.body)) for r in rows]

    def applied(self, keys: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these (origin, origin serial) pairs this log holds already."""
        wanted = list(set(keys))
        if not wanted:
            return set()
        rows = self._session.exec(
            select(ChangeRow.origin, ChangeRow.origin_serial).where(
                tuple_(col(ChangeRow.origin), col(ChangeRow.origin_serial)).in_(wanted)
            )
        ).all()
        return {(origin, serial) for origin, serial in rows}

    def _serial_row(self) -> Counter:
        if self._counter is None:
            counter = self._session.get(Counter, "serial", with_for_update=True)
            assert counter is not None, "seeded by the first migration"
            self._counter = counter
        return self._counter

    def _next(self) -> int:
        counter = self._serial_row()
        counter.value += 1
        self._session.add(counter)
        return counter.value

    def _add(
        self,
        serial: int,
        origin: str,
        origin_serial: int,
        kind: str,
        repo: str,
        private: bool,
        body: dict[str, object],
    ) -> None:
        self._session.add(
            ChangeRow(
                serial=serial,
                origin=origin,
                origin_serial=origin_serial,
                kind=kind,
                repo=repo,
                private=private,
                body=json.dumps(body, sort_keys=True),
                created_ms=now_ms(),
            )
        )
        self._mirrors.enqueue(serial, kind, repo, private=private)
