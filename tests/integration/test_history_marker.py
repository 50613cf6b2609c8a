"""A node on PostgreSQL put back from a dump knows it at its next start: it takes a new epoch
(so its peers check what they read of it), whether the dump went into a new database or back
into the same one. A restart alone is no restore. (The SQLite data dir's cases are in
tests/e2e/test_restore.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from registry.domain.access import CONSOLE
from registry.domain.names import RepoId, RepoType
from registry.runtime import Runtime
from tests.conftest import node_settings, postgres_database_for
from tests.tools import require, require_postgres

pytestmark = pytest.mark.all_backends  # its backends are its own: run once, not per backend

PG = ["-h", "127.0.0.1", "-U", "postgres"]


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def started(data_dir: Path, url: str, repo: str) -> tuple[str, int | None]:
    """Start the node (as far as its identity), make a repo, stop it cleanly: its epoch, and
    when it last found itself restored."""
    runtime = Runtime.open(node_settings(data_dir, database_url=url))
    try:
        epoch = runtime.identity.epoch
        runtime.repos.create(CONSOLE, RepoId(RepoType.MODEL, "admin", repo), private=False)
        with runtime.db.read() as tx:
            restored = tx.values.get("restored_ms")
    finally:
        runtime.close()
    return epoch, int(restored) if restored else None


def test_a_postgres_database_put_back_from_a_dump_takes_a_new_epoch(tmp_path: Path) -> None:
    require_postgres()
    pg_dump, pg_restore, psql = require("pg_dump"), require("pg_restore"), require("psql")
    data_dir = tmp_path / "node"
    url = postgres_database_for(data_dir, migrated=True)
    name = url.rsplit("/", 1)[1]
    dump = tmp_path / "backup.dump"

    first, restored = started(data_dir, url, "kept")
    assert restored is None
    run(pg_dump, *PG, "-Fc", "-f", str(dump), name)  # the backup, taken while it is stopped
    assert started(data_dir, url, "lost") == (first, None)  # a restart is no restore

    # Put back as a new database (dropped and made again: another one in the cluster).
    run(psql, *PG, "-d", "postgres", "-c", f'DROP DATABASE "{name}" WITH (FORCE)')
    run(psql, *PG, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"')
    run(pg_restore, *PG, "-d", name, str(dump))
    second, restored = started(data_dir, url, "after")
    assert second != first and restored is not None

    # Put back into the same database: the same one, but its log is behind the marker.
    run(pg_restore, *PG, "--clean", "--if-exists", "-d", name, str(dump))
    third, restored_again = started(data_dir, url, "after")
    assert third not in (first, second) and restored_again is not None
