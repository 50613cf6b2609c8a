"""Schema migrations on SQLite and Postgres: the revisions match the tables, databases made
before migrations are adopted with their data, and processes starting at once take turns."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

from registry.domain.history import GENESIS, link
from registry.metadata import tables  # noqa: F401 - the tables register on SQLModel.metadata
from registry.metadata.db import Database
from registry.metadata.schema import MIGRATIONS, alembic_config, current_revision, include_name
from tests.conftest import postgres_database_for

pytestmark = pytest.mark.all_backends  # its backends are its own: run once, not per backend

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
FULLTEXT = {"sqlite": "search_fts", "postgresql": "search_text"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (a fresh SQLite file, or a fresh database on the local Postgres)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    try:
        return postgres_database_for(tmp_path)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI (.ci/run starts it): {exc}")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


def drift(url: str) -> list[object]:
    """What alembic's autogenerate would change to make the database match the tables.
    Expression indexes (ix_repo_folded) it can neither reflect nor compare: it says so and
    leaves them out; test_schema_has_the_case_folded_index checks that one."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*expression-based index ix_repo_folded")
            warnings.filterwarnings("ignore", r".*expression-based index 'ix_repo_folded'")
            context = MigrationContext.configure(connection, opts={"include_name": include_name})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def migrated(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db


def node_value(db: Database, key: str, default: str) -> str:
    with db.write() as tx:
        return tx.values.setdefault(key, default)


def open_and_close(url: str) -> None:
    migrated(url).dispose()


def test_schema_migrated_from_empty_matches_the_tables(database_url: str) -> None:
    db = migrated(database_url)
    try:
        assert current_revision(db.engine) == HEAD
        assert db.head_serial() == 0
    finally:
        db.dispose()
    # A table changed without a revision fails here: scripts/new_migration.py writes one.
    assert drift(database_url) == []


def test_schema_has_the_case_folded_index(database_url: str) -> None:
    db = migrated(database_url)
    try:
        with db.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_repo_folded'"
            else:
                sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_repo_folded'"
            definition = connection.execute(text(sql)).scalar()
    finally:
        db.dispose()
    assert definition is not None and "lower(" in definition.lower() and "namespace" in definition


def test_schema_drift_check_sees_a_missing_index(database_url: str) -> None:
    open_and_close(database_url)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_repo_type_updated"))
    engine.dispose()
    assert [d[0] for d in drift(database_url) if isinstance(d, tuple)] == ["add_index"]


def test_schema_reopened_database_keeps_its_revision_and_data(database_url: str) -> None:
    db = migrated(database_url)
    node_value(db, "node_id", "first")
    db.dispose()
    db = migrated(database_url)
    try:
        assert node_value(db, "node_id", "second") == "first"
        assert current_revision(db.engine) == HEAD
    finally:
        db.dispose()


@pytest.mark.parametrize("with_lease", [False, True], ids=["before-lease", "with-lease"])
def test_schema_database_made_before_migrations_is_adopted_with_its_data(
    database_url: str, with_lease: bool
) -> None:
    make_old_database(database_url, with_lease=with_lease)
    db = migrated(database_url)
    try:
        assert current_revision(db.engine) == HEAD
        assert db.head_serial() == 7
        assert node_value(db, "node_id", "new") == "old-node"
        with db.engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
            assert "lease" in names
            expires = connection.execute(text("SELECT expires_ms FROM lease")).scalars().all()
            assert expires == ([1] if with_lease else [])
    finally:
        db.dispose()
    assert drift(database_url) == []


def test_schema_old_database_gets_what_its_version_lacked(database_url: str) -> None:
    """A data dir last opened by an older version: the baseline adds its missing tables,
    indexes and full-text table, as the old start-up code did."""
    make_old_database(database_url, with_lease=False, fulltext=False)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_repo_type_downloads"))
        connection.execute(text("DROP TABLE mirror_outbox"))
    engine.dispose()
    open_and_close(database_url)
    assert drift(database_url) == []
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert FULLTEXT[engine.dialect.name] in inspect(connection).get_table_names()
    engine.dispose()


def test_schema_processes_starting_at_once_all_open_the_database(database_url: str) -> None:
    # Processes, not threads: a process runs one migration at a time anyway (schema._RUNNING),
    # so only processes show that the database's own lock keeps starts apart.
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    starts = [spawn.Process(target=open_at_once, args=(database_url, barrier)) for _ in range(4)]
    for process in starts:
        process.start()
    for process in starts:
        process.join(timeout=120)
    assert [process.exitcode for process in starts] == [0, 0, 0, 0]
    engine = create_engine(database_url)
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        counters = connection.execute(text("SELECT name, value FROM counter")).all()
    engine.dispose()
    assert [tuple(row) for row in versions] == [(HEAD,)]
    assert sorted(tuple(row) for row in counters) == [("generation", 0), ("serial", 0)]


def open_at_once(url: str, barrier: BarrierType) -> None:
    """A node process starting: imports done, it waits for the others, then opens."""
    barrier.wait(timeout=60)
    open_and_close(url)


def make_old_database(url: str, *, with_lease: bool, fulltext: bool = True) -> None:
    """A database as the code before migrations left it (no alembic_version), with some data.

    That code made the tables with create_all; their schema is the baseline's (`drift` shows
    that revisions and tables agree), so the revision of that time makes them here, and this
    keeps working when the tables change later.
    """
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002" if with_lease else "0001")
        connection.execute(text("DROP TABLE alembic_version"))
        if not fulltext:
            connection.execute(text(f"DROP TABLE {FULLTEXT[engine.dialect.name]}"))
        connection.execute(text("DELETE FROM counter"))
        connection.execute(text("INSERT INTO counter VALUES ('serial', 7)"))
        connection.execute(text("INSERT INTO nodestate VALUES ('node_id', 'old-node')"))
        if with_lease:
            connection.execute(text("INSERT INTO lease VALUES ('indexer', 'p1', 1)"))
    engine.dispose()


def test_schema_history_chains_this_nodes_own_entries_and_rereads_peers(
    database_url: str,
) -> None:
    """0007: the node's own entries get their chain links in order; entries learned from a
    peer get none (they take the peer's when read again), so every peer is read from 0."""
    engine = create_engine(database_url)
    origins, bodies = ["me", "peer", "me"], ['{"a": 1}', '{"b": 2}', '{"c": 3}']
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")
        connection.execute(text("INSERT INTO nodestate VALUES ('node_id', 'me')"))
        for serial, (origin, body) in enumerate(zip(origins, bodies, strict=True), start=1):
            connection.execute(
                text(
                    "INSERT INTO change VALUES (:serial, :origin, :serial, 'k', 'model/a/b', "
                    ":private, :body, 0)"
                ),
                {"serial": serial, "origin": origin, "private": False, "body": body},
            )
        connection.execute(
            text(
                "INSERT INTO peer (id, url, blobs, cursor, head, created_ms) "
                "VALUES ('p', 'http://x', 'eager', 3, 3, 0)"
            )
        )
    engine.dispose()
    db = migrated(database_url)
    try:
        with db.read() as tx:
            chains = [tx.changes.at(serial).chain for serial in (1, 2, 3)]  # type: ignore[union-attr]
            peer = tx.peers.get("p")
        first = link(GENESIS, "me", 1, "k", "model/a/b", False, bodies[0])
        assert chains == [first, None, link(first, "me", 3, "k", "model/a/b", False, bodies[2])]
        assert peer is not None and peer.cursor == 0
    finally:
        db.dispose()
    assert drift(database_url) == []
