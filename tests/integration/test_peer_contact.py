"""Each pull records who answered; a pull from a peer as it was writes nothing (no write
lock to wait for beside a catch-up's bookkeeping, no long-poll woken for nothing)."""

from __future__ import annotations

from pathlib import Path

from registry.domain.access import CONSOLE
from registry.runtime import Runtime
from tests.conftest import node_settings


def test_a_peer_answering_as_before_writes_nothing_and_a_new_epoch_is_noted(
    tmp_path: Path,
) -> None:
    runtime = Runtime.open(node_settings(tmp_path / "node"))
    try:
        peer = runtime.peers.add(CONSOLE, "http://127.0.0.1:9", None, "lazy")  # never pulled
        writes: list[int] = []
        runtime.db.after_write.append(lambda: writes.append(1))
        first, changed = runtime.peers.contact(peer.id, "node-a", "epoch-1")
        assert (first.node_id, first.epoch, changed, len(writes)) == ("node-a", "epoch-1", False, 1)
        again, changed = runtime.peers.contact(peer.id, "node-a", "epoch-1")
        assert (again, changed, len(writes)) == (first, False, 1)
        restored, changed = runtime.peers.contact(peer.id, "node-a", "epoch-2")
        assert (restored.epoch, changed, len(writes)) == ("epoch-2", True, 2)
        other, changed = runtime.peers.contact(peer.id, "node-b", "epoch-2")
        assert (other.node_id, changed, len(writes)) == ("node-a", False, 2)  # first answer sticks
        assert runtime.peers.get(peer.id).epoch == "epoch-2"
    finally:
        runtime.close()
