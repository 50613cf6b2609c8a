"""Engines and transactions: `Database.read()` and `Database.write()` each give a `Tx`, the
metadata's query groups over one transaction (registry/metadata/tx.py).

Theory of operation: every write runs in `Database.write()`, one transaction that takes the
database's write lock up front (`BEGIN IMMEDIATE` on SQLite, the serial counter's row lock on
Postgres). Each change appends a `Change` row whose serial comes from that counter inside the
same transaction (`registry.metadata.changelog`), so serials are gap-free and no reader ever
sees serial N+1 before N.

A database several processes share (Postgres) also keeps a `generation` counter that every
write transaction moves: a process's read cache compares it to tell that another process wrote.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from registry.domain.errors import DatabaseUnavailableError, InsufficientStorageError
from registry.metadata.schema import migrate
from registry.metadata.tx import Tx


class Database:
    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        """`busy_timeout`: seconds a SQLite write waits for another's lock before it fails
        (DatabaseUnavailableError)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Several node processes may share a server database; an embedded one has one process.
        self.shared = not self.is_sqlite
        self._read = _engine(url, immediate=False, busy_timeout=busy_timeout)
        self._write = (
            _engine(url, immediate=True, busy_timeout=busy_timeout)
            if self.is_sqlite
            else self._read
        )
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
        """The engine that writes (schema tools and tests that must reach under the groups)."""
        return self._write

    def dispose(self) -> None:
        self._read.dispose()
        self._write.dispose()
        if self._generation is not None:
            self._generation.dispose()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with _faults(), Session(self._read, expire_on_commit=False) as session:
            yield Tx(session)

    @contextmanager
    def write(self, *, invalidates: bool = True) -> Iterator[Tx]:
        """One write transaction; committed on success, rolled back on any error.

        `invalidates=False` is for bookkeeping no reader caches (leases): it leaves the read
        caches and long-polls of every process alone.
        """
        with _faults(), Session(self._write, expire_on_commit=False) as session:
            with session.begin():
                tx = Tx(session)
                if not self.is_sqlite:
                    # The write lock up front, as BEGIN IMMEDIATE on SQLite: a transaction that
                    # reads a branch head and moves it must not interleave with another.
                    tx.changes.lock()
                yield tx
                if self.shared and invalidates:
                    session.execute(_NEXT_GENERATION)
            if invalidates:
                for callback in self.after_write:
                    callback()

    def generation(self) -> int:
        """The shared write generation (moves with every write transaction of any process)."""
        with _faults():
            try:
                return self._read_generation()
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                return self._read_generation()  # a dead pooled connection was dropped: again

    def _read_generation(self) -> int:
        assert self._generation is not None, "kept only when the database is shared"
        with self._generation.connect() as connection:
            return int(connection.execute(_GENERATION).scalar() or 0)

    def head_serial(self) -> int:
        with self.read() as tx:
            return tx.changes.head()

    def identity(self) -> str:
        """What tells this database from a copy of it put in its place: the SQLite file's
        device and inode, or the Postgres database's oid in its cluster."""
        if self.is_sqlite:
            path = self._write.url.database
            if not path or path == ":memory:":
                return "sqlite:memory"
            stat = Path(path).stat()
            return f"sqlite:{stat.st_dev}:{stat.st_ino}:{_generation_of(Path(path).parent)}"
        with _faults(), self._read.connect() as connection:
            oid = connection.execute(_DATABASE_OID).scalar()
        return f"postgres:{oid}"


def _generation_of(folder: Path) -> int:
    """The folder's inode generation (FS_IOC_GETVERSION; random per new inode on ext4, tmpfs
    and others): a data dir deleted and copied back may get the same inode numbers, not the
    same generation. The folder, not the database file: closing any descriptor of that file
    would drop this process's SQLite locks on it. 0 where the filesystem keeps none."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return 0
    try:
        answer = fcntl.ioctl(fd, _FS_IOC_GETVERSION, bytes(8))
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int(struct.unpack("q", answer)[0])


@contextmanager
def _faults() -> Iterator[None]:
    """The database's own faults as the registry's errors (503 or 507 with a code, no
    traceback; whoever catches them logs one line): a server that is down, restarting or
    refusing connections, a file locked for longer than the busy timeout, read-only, or on a
    full disk. Whatever the transaction wrote is rolled back: nothing is reported done that did
    not commit."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0][:300]
        if "disk is full" in reason or "No space left" in reason:
            raise InsufficientStorageError(
                f"The disk holding this node's database is full ({reason})"
            ) from None
        raise DatabaseUnavailableError(
            f"This node's database is unavailable ({reason}); the request did not complete, "
            "try again"
        ) from None


_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)
_GENERATION = text("SELECT value FROM counter WHERE name = 'generation'")
_DATABASE_OID = text("SELECT oid FROM pg_database WHERE datname = current_database()")
_NEXT_GENERATION = text("UPDATE counter SET value = value + 1 WHERE name = 'generation'")


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _engine(url: str, *, immediate: bool, busy_timeout: float) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        # Switching a new file to WAL needs its exclusive lock; two processes opening it at
        # once can each hold a shared one, and SQLite then fails one at once (a deadlock, so
        # no busy wait): try again, within the busy timeout.
        for attempt in Retrying(
            retry=retry_if_exception(_locked),
            stop=stop_after_delay(busy_timeout),
            wait=wait_random(0.01, 0.2),
            reraise=True,
        ):
            with attempt:
                cursor.execute("PRAGMA journal_mode=WAL")
        for pragma in ("synchronous=FULL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
