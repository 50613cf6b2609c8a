"""Leases on a real database: one holder at a time, handed over on release or expiry."""

from __future__ import annotations

import time
from pathlib import Path

from registry.metadata.db import Database
from registry.service.leases import Leases, holder_name
from tests.conftest import node_settings


def open_db(tmp_path: Path) -> Database:
    settings = node_settings(tmp_path / "node")
    settings.data_dir.mkdir()
    db = Database(settings.effective_database_url)
    db.migrate()
    return db


def test_lease_held_by_one_process_until_released(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    first, second = Leases(db, "one", ttl=30), Leases(db, "two", ttl=30)
    assert first.holds("indexer")
    assert not second.holds("indexer")
    assert second.holds("scanner")  # leases are per job
    first.stop()  # a clean stop hands every job over at once
    assert second.holds("indexer")
    assert not first.holds("scanner")
    assert second.held() == ["indexer", "scanner"]
    db.dispose()


def test_lease_released_alone_stays_free_while_its_holder_renews_the_others(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path)
    holder, other = Leases(db, "holder", ttl=0.6), Leases(db, "other", ttl=0.6)
    holder.start()
    assert holder.holds("scrub") and holder.holds("indexer")
    assert other.holder_of("scrub") == "holder"
    holder.release("scrub")
    assert other.holder_of("scrub") is None
    deadline = time.monotonic() + 1.5  # several renewal rounds: none takes it back
    while time.monotonic() < deadline:
        assert holder.held() == ["indexer"]
        time.sleep(0.1)
    assert other.holds("scrub") and not other.holds("indexer")
    holder.stop()
    db.dispose()


def test_lease_taken_over_when_its_holder_stops_renewing(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    dead, alive = Leases(db, "dead", ttl=0.5), Leases(db, "alive", ttl=0.5)
    assert dead.holds("mirrors")  # then never renewed, as after a SIGKILL
    assert not alive.holds("mirrors")
    time.sleep(0.6)
    assert alive.holds("mirrors")
    assert not dead.holds("mirrors")  # it sees it lost the lease
    db.dispose()


def test_lease_kept_by_renewal_past_its_ttl(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    holder, other = Leases(db, "holder", ttl=0.6), Leases(db, "other", ttl=0.6)
    holder.start()
    assert holder.holds("sync:p")
    deadline = time.monotonic() + 2.0  # more than three lease lengths
    while time.monotonic() < deadline:
        assert not other.holds("sync:p")
        time.sleep(0.1)
    holder.stop()
    assert other.holds("sync:p")
    db.dispose()


def test_lease_after_a_crash_comes_back_at_once_only_on_an_embedded_database(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path)
    crashed = Leases(db, holder_name(db, "n"), ttl=30)
    assert crashed.holds("indexer")  # then the process dies without releasing
    restarted = Leases(db, holder_name(db, "n"), ttl=30)
    # One process per embedded database: the restarted node is the holder. Processes sharing
    # a server database have names of their own and wait for the lease to run out.
    assert restarted.holds("indexer") is (not db.shared)
    db.dispose()
