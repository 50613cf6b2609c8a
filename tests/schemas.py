"""Empty databases at the newest schema for test nodes, copied from one migrated per process.

A node migrates its database at every start (`registry.metadata.schema.migrate`). From nothing,
the migrations cost about 0.4 s of CPU on SQLite and more on Postgres, and the suite starts
thousands of nodes. So a node a test starts on a new data dir gets a copy of a database this
process migrated once: a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on Postgres. The
node's own `migrate` still runs, finds the schema at head and does nothing. The migrations
themselves are tested on databases of their own (tests/integration/test_schema.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import psycopg

from registry.metadata.db import Database

SQLITE_FILE = "modelyard.db"  # Settings.effective_database_url's file in the data dir
_ADMIN_DSN = "host=127.0.0.1 user=postgres dbname=postgres"
_sqlite_template: Path | None = None
_postgres_template: str | None = None


def place_sqlite(data_dir: Path) -> None:
    """Put an empty, migrated SQLite database in `data_dir` unless it holds one already."""
    target = data_dir / SQLITE_FILE
    if target.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite(), target)


def postgres_template() -> str:
    """The name of this process's migrated Postgres database, to make others from (dropped by
    `close`). Named by PID: test runs side by side each have their own."""
    global _postgres_template
    if _postgres_template is None:
        name = f"myd_template_{os.getpid()}"
        with psycopg.connect(_ADMIN_DSN, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg.execute(f'CREATE DATABASE "{name}"')
        _migrate(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        _postgres_template = name
    return _postgres_template


def _sqlite() -> Path:
    global _sqlite_template
    if _sqlite_template is None:
        path = Path(tempfile.mkdtemp(prefix="modelyard-schema-")) / SQLITE_FILE
        _migrate(f"sqlite:///{path}")
        with contextlib.closing(sqlite3.connect(path)) as connection:  # all in the file, no WAL
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _sqlite_template = path
    return _sqlite_template


def _migrate(url: str) -> None:
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.dispose()


def close() -> None:
    """Remove this process's templates (at the end of its test session)."""
    global _sqlite_template, _postgres_template
    if _sqlite_template is not None:
        shutil.rmtree(_sqlite_template.parent, ignore_errors=True)
        _sqlite_template = None
    if _postgres_template is not None:
        with psycopg.connect(_ADMIN_DSN, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{_postgres_template}" WITH (FORCE)')
        _postgres_template = None
