"""The schema's versions: alembic revisions in `registry/metadata/migrations`, applied at start.

Theory of operation: `migrate` runs every pending revision in one transaction that first takes
the database's migration lock (`pg_advisory_xact_lock` on Postgres, the write lock `BEGIN
IMMEDIATE` takes on SQLite), so processes starting at once on one database take turns: the
first upgrades, the next ones find the schema at head and do nothing. A database made before
migrations (tables but no `alembic_version`) takes the same path: the revisions written for
the schema of that time create only what it lacks, then it is versioned like any other.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# The full-text tables (FTS5 on SQLite, with its shadow tables; tsvector on Postgres) are made
# by the migrations in raw SQL and are not in SQLModel.metadata, so autogenerate skips them.
FULLTEXT_TABLES = ("search_fts", "search_text")
# pg_advisory_xact_lock's key for schema changes: any fixed 64-bit number ("mydschem").
_LOCK_KEY = 0x6D7964736368656D
# alembic's `context` and `op` are module-level proxies to the one environment running, so a
# process runs one migration at a time, whatever the database (tests open several at once).
_RUNNING = threading.Lock()


def migrate(engine: Engine) -> None:
    """Bring the database to the newest revision; safe with several processes at once.

    `engine` must be the writer `registry.metadata.db` builds: on SQLite its transactions
    begin with `BEGIN IMMEDIATE`, which is what serializes concurrent starts there.
    """
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with _RUNNING, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends (commit, rollback or a dropped connection), so
            # it cannot outlive the migration on a pooled connection.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        current = _revision(connection)
        if current == head:
            return  # the usual start: alembic is not even loaded
        if current is None and inspect(connection).has_table("counter"):
            logger.info("schema made before migrations: versioning it")
        command.upgrade(alembic_config(connection), "head")
        logger.info("schema upgraded from=%s to=%s", current, head)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: not versioned yet)."""
    with engine.connect() as connection:
        return _revision(connection)


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """For autogenerate: whether an object of the database is ours to compare."""
    if type_ != "table" or name is None:
        return True
    return not name.startswith(FULLTEXT_TABLES)


def alembic_config(connection: Connection) -> Config:
    """For an alembic command on `connection` (env.py runs on it, in its transaction)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if version is None else str(version)
