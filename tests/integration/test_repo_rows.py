"""The repos query group on a real database: what a write transaction asks of it, in statements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from registry.domain.names import RepoId, RepoType
from registry.metadata.db import Database
from tests.conftest import node_settings


def test_repo_writes_after_a_lookup_read_the_repo_once(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "node")
    settings.data_dir.mkdir()
    db = Database(settings.effective_database_url)
    db.migrate()
    repo = RepoId(RepoType.MODEL, "admin", "rows")
    with db.write() as tx:
        tx.repos.create(repo, private=False, home="n1", incarnation="i1", created_ms=1)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    with db.write() as tx:  # what a replica does per entry: look the repo up, then write it
        for n in range(3):
            found = tx.repos.find(repo)
            assert found is not None
            tx.repos.touch(found.id, 10 + n)
            tx.repos.saw_ref_version(found.id, 5 + n)
    event.remove(db.engine, "before_cursor_execute", count)
    reads = [s for s in statements if s.startswith("SELECT") and "FROM repo" in s]
    assert len(reads) == 3  # the finds; the writes after them read nothing again
    with db.read() as tx:
        stored = tx.repos.find(repo)
    assert stored is not None and (stored.updated_ms, stored.ref_version) == (12, 7)
    db.dispose()
