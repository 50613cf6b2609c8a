"""An embedded database locked by another writer for longer than the node waits: writes answer
503 DatabaseUnavailable with Retry-After (not a 500 after a long hang), reads go on, and the
node writes again as soon as the lock is released."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunningNode


def test_a_write_waiting_past_the_busy_timeout_is_a_503_and_the_next_one_works(
    start_node: Callable[..., RunningNode], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.db"
    node = start_node("locked", database_url=f"sqlite:///{path}", database_busy_timeout=0.5)
    create = {"name": "first", "organization": "admin", "type": "model"}
    with node.client(node.admin_token) as http:
        assert http.post("/api/repos/create", json=create).status_code == 200
        # the node's own background writers may hold the lock a moment: wait for our turn
        blocker = sqlite3.connect(path, timeout=10, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            again = {**create, "name": "second"}
            caplog.set_level(logging.WARNING)
            answer = http.post("/api/repos/create", json=again)
            failed = [r for r in caplog.records if "/api/repos/create" in r.getMessage()]
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "DatabaseUnavailable"
            assert "locked" in answer.json()["error"] and answer.headers["retry-after"]
            # one WARNING line with its cause, no traceback
            assert [(r.levelno, bool(r.exc_info)) for r in failed] == [(logging.WARNING, False)]
            assert "code=DatabaseUnavailable" in failed[0].getMessage()
            assert not [r for r in caplog.records if r.name.startswith("registry.metadata")]
            assert http.get("/api/models/admin/first").status_code == 200  # reads go on
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert http.post("/api/repos/create", json=again).status_code == 200
        assert http.get("/api/models/admin/second").status_code == 200
