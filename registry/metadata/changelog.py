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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy
from sqlalchemy import func, tuple_, update
from sqlmodel import Session, col, select

from registry.domain.changes import Change, ChangeEntry
from registry.domain.clock import now_ms
from registry.domain.history import GENESIS, link
from registry.domain.records import RepoRecord
from registry.metadata.bulk import insert_rows
from registry.metadata.mirrors import Mirrors
from registry.metadata.tables import Change as ChangeRow
from registry.metadata.tables import Counter, table_of

RANGE_SPREAD = 4  # `applied` reads a range of serials up to this many times as wide as asked
_APPLIED_RANGE = sqlalchemy.select(col(ChangeRow.origin_serial), col(ChangeRow.chain)).where(
    col(ChangeRow.origin) == sqlalchemy.bindparam("origin"),
    col(ChangeRow.origin_serial).between(sqlalchemy.bindparam("low"), sqlalchemy.bindparam("high")),
    col(ChangeRow.abandoned_ms).is_(None),
)


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
        row.chain,
    )


class ChangeLog:
    def __init__(self, session: Session, mirrors: Mirrors) -> None:
        self._session = session
        self._mirrors = mirrors
        self._counter: Counter | None = None  # the serial row, once taken in this transaction
        self._chains: dict[str, str] = {}  # the newest chain of an origin, once read

    def lock(self) -> None:
        """Take the serial counter's row lock (Postgres: the write lock of the transaction)."""
        self._serial_row()

    def head(self) -> int:
        """The newest serial (0 for an empty log)."""
        counter = self._session.get(Counter, "serial")
        return counter.value if counter else 0

    def append(
        self, origin: str, repo: RepoRecord, change: Change, *, private: bool | None = None
    ) -> int:
        """Log a change this node made to `repo`; returns its serial. `private` (default: the
        repo's) says whether the feed serves it only to readers of the repo."""
        serial = self._next()
        body = change.body()
        text = json.dumps(body, sort_keys=True)
        hidden = repo.private if private is None else private
        chain = link(
            self._newest_chain(origin), origin, serial, change.KIND, repo.key, hidden, text
        )
        self._chains[origin] = chain
        self._add(serial, origin, serial, change.KIND, repo.key, hidden, text, chain, repo.key)
        return serial

    def set_private(self, repo: str, home: str, private: bool) -> None:
        """Mark the logged entries of a repo (by its key at its home) as of a private repo or
        not: the feed serves them from now on only to readers of the repo, or to everyone."""
        self._session.flush()
        self._session.execute(
            update(ChangeRow)
            .where(col(ChangeRow.repo) == repo, col(ChangeRow.origin) == home)
            .values(private=private)
        )

    def record(self, entry: ChangeEntry, mirrored: str | None) -> int:
        """Log an entry learned from a peer with its origin, body and chain as they came; its
        mirrors push it for the local repo `mirrored` (None: for none)."""
        serial = self._next()
        text = json.dumps(entry.body, sort_keys=True)
        self._add(
            serial,
            entry.origin,
            entry.origin_serial,
            entry.kind,
            entry.repo,
            entry.private,
            text,
            entry.chain,
            mirrored,
        )
        self._chains.pop(entry.origin, None)
        return serial

    def record_many(self, entries: Sequence[tuple[ChangeEntry, str | None]]) -> None:
        """`record` for many entries, in their order, in one statement of plain values past
        the ORM (a replica logs thousands a batch)."""
        if not entries:
            return
        counter = self._serial_row()
        first = counter.value + 1
        counter.value += len(entries)
        self._session.add(counter)
        now = now_ms()
        rows = [
            {
                "serial": serial,
                "origin": entry.origin,
                "origin_serial": entry.origin_serial,
                "kind": entry.kind,
                "repo": entry.repo,
                "private": entry.private,
                "body": json.dumps(entry.body, sort_keys=True),
                "created_ms": now,
                "chain": entry.chain,
            }
            for serial, (entry, _) in enumerate(entries, first)
        ]
        self._session.flush()  # what is pending first (the serial counter's row, with the rest)
        insert_rows(self._session.connection(), table_of(ChangeRow), rows)
        for serial, (entry, mirrored) in enumerate(entries, first):
            if mirrored is not None:
                self._mirrors.enqueue(serial, entry.kind, mirrored, private=entry.private)
            self._chains.pop(entry.origin, None)

    def page(self, since: int, limit: int) -> list[Logged]:
        """Up to `limit` entries after `since`, in serial order (abandoned ones left out).
        Plain columns rather than rows: a page of thousands is read for every catching-up
        peer, and building the row objects cost more than the statement."""
        rows = self._session.execute(
            sqlalchemy.select(
                col(ChangeRow.serial),
                col(ChangeRow.origin),
                col(ChangeRow.origin_serial),
                col(ChangeRow.kind),
                col(ChangeRow.repo),
                col(ChangeRow.private),
                col(ChangeRow.body),
                col(ChangeRow.created_ms),
                col(ChangeRow.chain),
            )
            .where(col(ChangeRow.serial) > since, col(ChangeRow.abandoned_ms).is_(None))
            .order_by(col(ChangeRow.serial))
            .limit(limit)
        ).all()
        return [
            Logged(ChangeEntry(s, o, o_s, k, r, p, json.loads(b), c, ch), len(b))
            for s, o, o_s, k, r, p, b, c, ch in rows
        ]

    def at(self, serial: int) -> ChangeEntry | None:
        """The entry at `serial` of this log, abandoned or not."""
        row = self._session.get(ChangeRow, serial)
        return None if row is None else entry_of(row)

    def applied(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
        """Which of these (origin, origin serial) pairs this log holds already (not
        abandoned), each with its chain. An origin's serials that lie close together (a page
        of a feed) are looked up as a range, which is much cheaper to send than each pair."""
        wanted = set(keys)
        by_origin: dict[str, list[int]] = {}
        for origin, serial in wanted:
            by_origin.setdefault(origin, []).append(serial)
        found: dict[tuple[str, int], str | None] = {}
        pairs = []
        for origin, serials in by_origin.items():
            low, high = min(serials), max(serials)
            if high - low >= RANGE_SPREAD * len(serials):
                pairs += [(origin, serial) for serial in serials]
                continue
            rows = self._session.execute(
                _APPLIED_RANGE, {"origin": origin, "low": low, "high": high}
            ).all()
            found |= {(origin, s): chain for s, chain in rows if (origin, s) in wanted}
        if pairs:
            rows = self._session.execute(
                sqlalchemy.select(
                    col(ChangeRow.origin), col(ChangeRow.origin_serial), col(ChangeRow.chain)
                ).where(
                    tuple_(col(ChangeRow.origin), col(ChangeRow.origin_serial)).in_(pairs),
                    col(ChangeRow.abandoned_ms).is_(None),
                )
            ).all()
            found |= {(origin, serial): chain for origin, serial, chain in rows}
        return found

    def set_chain(self, origin: str, origin_serial: int, chain: str) -> None:
        """Give an entry held from before chains were kept the chain it came with again."""
        self._session.execute(
            update(ChangeRow)
            .where(
                col(ChangeRow.origin) == origin,
                col(ChangeRow.origin_serial) == origin_serial,
                col(ChangeRow.chain).is_(None),
            )
            .values(chain=chain)
        )

    def chains(self, origin: str, upto: int) -> list[tuple[int, str]]:
        """(origin serial, chain) of the origin's entries held here up to `upto`, oldest
        first, those with a known chain and not abandoned."""
        rows = self._session.exec(
            select(ChangeRow.origin_serial, ChangeRow.chain)
            .where(
                ChangeRow.origin == origin,
                col(ChangeRow.origin_serial) <= upto,
                col(ChangeRow.chain).is_not(None),
                col(ChangeRow.abandoned_ms).is_(None),
            )
            .order_by(col(ChangeRow.origin_serial))
        ).all()
        return [(serial, chain) for serial, chain in rows if chain is not None]

    def abandon(self, origin: str, after: int) -> list[ChangeEntry]:
        """Mark the origin's entries past origin serial `after` abandoned; returns them."""
        held = (
            col(ChangeRow.origin) == origin,
            col(ChangeRow.origin_serial) > after,
            col(ChangeRow.abandoned_ms).is_(None),
        )
        rows = self._session.exec(select(ChangeRow).where(*held)).all()
        if rows:  # the same rows (this transaction holds the write lock): no list of serials
            self._session.execute(update(ChangeRow).where(*held).values(abandoned_ms=now_ms()))
        self._chains.pop(origin, None)
        return [entry_of(r) for r in rows]

    def latest(self, origin: str, repo: str, kinds: tuple[str, ...]) -> list[ChangeEntry]:
        """The origin's entries of these kinds about `repo` held here (not abandoned), newest
        first."""
        rows = self._session.exec(
            select(ChangeRow)
            .where(
                ChangeRow.origin == origin,
                ChangeRow.repo == repo,
                col(ChangeRow.kind).in_(kinds),
                col(ChangeRow.abandoned_ms).is_(None),
            )
            .order_by(col(ChangeRow.serial).desc())
        ).all()
        return [entry_of(r) for r in rows]

    def abandoned(self) -> dict[str, int]:
        """How many abandoned entries this log keeps, not recovered yet, by origin."""
        rows = self._session.exec(
            select(ChangeRow.origin, func.count())
            .where(col(ChangeRow.abandoned_ms).is_not(None), col(ChangeRow.recovered_ms).is_(None))
            .group_by(ChangeRow.origin)
        ).all()
        return {origin: count for origin, count in rows}

    def set_aside(self, origin: str, since: int, limit: int) -> list[ChangeEntry]:
        """The origin's abandoned entries after serial `since`, in serial order."""
        rows = self._session.exec(
            select(ChangeRow)
            .where(
                ChangeRow.origin == origin,
                col(ChangeRow.serial) > since,
                col(ChangeRow.abandoned_ms).is_not(None),
            )
            .order_by(col(ChangeRow.serial))
            .limit(limit)
        ).all()
        return [entry_of(r) for r in rows]

    def recovered(self, origin: str, repo: str, commit: str) -> None:
        """A commit of the origin's abandoned history came back: its entries (its commit.add,
        the ref moves to it) count as recovered; and the repo's other abandoned entries too
        once none of its commits is missing any more."""
        rows = self._session.exec(
            select(ChangeRow).where(
                ChangeRow.origin == origin,
                ChangeRow.repo == repo,
                col(ChangeRow.abandoned_ms).is_not(None),
                col(ChangeRow.recovered_ms).is_(None),
            )
        ).all()
        if not rows:
            return
        now = now_ms()
        body_of = {r.serial: json.loads(r.body) for r in rows}
        for row in rows:
            if commit in (body_of[row.serial].get("id"), body_of[row.serial].get("commit")):
                row.recovered_ms = now
                self._session.add(row)
        if all(r.recovered_ms is not None for r in rows if r.kind == "commit.add"):
            for row in rows:
                row.recovered_ms = row.recovered_ms or now
                self._session.add(row)

    def _newest_chain(self, origin: str) -> str:
        if origin not in self._chains:
            chain = self._session.exec(
                select(ChangeRow.chain)
                .where(ChangeRow.origin == origin, col(ChangeRow.abandoned_ms).is_(None))
                .order_by(col(ChangeRow.serial).desc())
                .limit(1)
            ).first()
            self._chains[origin] = chain or GENESIS
        return self._chains[origin]

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
        body: str,
        chain: str | None,
        mirrored: str | None,
    ) -> None:
        self._session.add(
            ChangeRow(
                serial=serial,
                origin=origin,
                origin_serial=origin_serial,
                kind=kind,
                repo=repo,
                private=private,
                body=body,
                created_ms=now_ms(),
                chain=chain,
            )
        )
        if mirrored is not None:
            self._mirrors.enqueue(serial, kind, mirrored, private=private)
