"""Engines, transactions and the change log.

Theory of operation: every write runs in `Database.write()`, one transaction that takes the
database's write lock up front (`BEGIN IMMEDIATE` on SQLite, the serial counter's row lock on
Postgres). Each change appends a `Change` row whose serial comes from that counter inside the
same transaction, so serials are gap-free and no reader ever sees serial N+1 before N.

A database several processes share (Postgres) also keeps a `generation` counter that every
write transaction moves: a process's read cache compares it to tell that another process wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from registry.metadata.outbox import enqueue
from registry.metadata.schema import migrate
from registry.metadata.tables import Change, Counter, NodeState


def now_ms() -> int:
    return int(time.time() * 1000)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Several node processes may share a server database; an embedded one has one process.
        self.shared = not self.is_sqlite
        self._read = _engine(url, immediate=False)
        self._write = _engine(url, immediate=True) if self.is_sqlite else self._read
        # The shared generation is read on every cached read: one round trip on a connection
        # of its own (autocommit, no pre-ping; a dropped connection is retried once).
        self._generation = (
            create_engine(url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=16)
            if self.shared
            else None
        )
        self.after_write: list[Callable[[], None]] = []  # e.g. cache invalidation

    def migrate(self) -> None:
        """Bring the schema to the newest revision (under a lock: processes starting together
        migrate once)."""
        migrate(self._write)

    @property
    def engine(self) -> Engine:
        """The engine that writes (for schema statements beyond the tables)."""
        return self._write

    def dispose(self) -> None:
        self._read.dispose()
        self._write.dispose()
        if self._generation is not None:
            self._generation.dispose()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self._read, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self, *, invalidates: bool = True) -> Iterator[Session]:
        """One write transaction; committed on success, rolled back on any error.

        `invalidates=False` is for bookkeeping no reader caches (leases): it leaves the read
        caches and long-polls of every process alone.
        """
        with Session(self._write, expire_on_commit=False) as session:
            with session.begin():
                if not self.is_sqlite:
                    # The write lock up front, as BEGIN IMMEDIATE on SQLite: a transaction that
                    # reads a branch head and moves it must not interleave with another.
                    counter = session.get(Counter, "serial", with_for_update=True)
                    assert counter is not None, "created when the database was opened"
                    session.info["serial_counter"] = counter
                yield session
                if self.shared and invalidates:
                    session.execute(_NEXT_GENERATION)
            if invalidates:
                for callback in self.after_write:
                    callback()

    def generation(self) -> int:
        """The shared write generation (moves with every write transaction of any process)."""
        try:
            return self._read_generation()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return self._read_generation()  # a dead pooled connection was dropped: once more

    def _read_generation(self) -> int:
        assert self._generation is not None, "kept only when the database is shared"
        with self._generation.connect() as connection:
            return int(connection.execute(_GENERATION).scalar() or 0)

    def append_change(
        self,
        session: Session,
        origin: str,
        kind: str,
        repo: str,
        body: dict[str, Any],
        *,
        private: bool,
        origin_serial: int | None = None,
    ) -> int:
        """Append one entry with the next serial; `origin_serial` is given for entries
        learned from a peer (their own serial is then kept for dedup)."""
        # Row-locked once per transaction (Postgres), then reused from the session.
        counter = session.info.get("serial_counter")
        if counter is None:
            counter = session.get(Counter, "serial", with_for_update=True)
            assert counter is not None, "created with the schema"
            session.info["serial_counter"] = counter
        counter.value += 1
        session.add(counter)
        serial = counter.value
        session.add(
            Change(
                serial=serial,
                origin=origin,
                origin_serial=serial if origin_serial is None else origin_serial,
                kind=kind,
                repo=repo,
                private=private,
                body=json.dumps(body, sort_keys=True),
                created_ms=now_ms(),
            )
        )
        enqueue(session, serial, kind, repo, private=private)
        return serial

    def head_serial(self) -> int:
        with self.read() as session:
            counter = session.get(Counter, "serial")
            return counter.value if counter else 0

    def node_value(self, key: str, default: str) -> str:
        """A persisted node property; `default` is stored on first use."""
        with self.write() as session:
            row = session.get(NodeState, key)
            if row is None:
                row = NodeState(key=key, value=default)
                session.add(row)
            return row.value


_GENERATION = text("SELECT value FROM counter WHERE name = 'generation'")
_NEXT_GENERATION = text("UPDATE counter SET value = value + 1 WHERE name = 'generation'")


def _engine(url: str, *, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "busy_timeout=30000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
