"""How a new peer is to be joined, said over HTTP as with `peer add --bootstrap`, and
forgotten with the peer."""

from __future__ import annotations

from collections.abc import Callable

from registry.domain.access import CONSOLE
from tests.conftest import ADMIN_TOKEN, RunningNode

UNREACHABLE = "http://127.0.0.1:9"  # never answers: the choice stays noted, unused


def test_post_peers_takes_bootstrap_and_remove_forgets_it(node: RunningNode) -> None:
    with node.client(ADMIN_TOKEN) as http:
        refused = http.post("/v1/peers", json={"url": UNREACHABLE, "bootstrap": "fast"})
        assert refused.status_code == 422 and refused.json()["code"] == "BadRequest"
        assert http.get("/v1/peers").json() == []
        added = http.post("/v1/peers", json={"url": UNREACHABLE, "bootstrap": "snapshot"})
        assert added.status_code == 201, added.text
        assert node.runtime.snapshots.chosen(UNREACHABLE) == "snapshot"
        assert http.delete(f"/v1/peers/{added.json()['id']}").status_code == 200
        assert node.runtime.snapshots.chosen(UNREACHABLE) is None


def test_a_peer_added_again_is_joined_as_the_new_add_says(node: RunningNode) -> None:
    peers = node.runtime.peers
    first = peers.add(CONSOLE, UNREACHABLE, None, "lazy", bootstrap="snapshot")
    peers.remove(CONSOLE, first.id)
    peers.add(CONSOLE, UNREACHABLE, None, "lazy")  # no choice: replay
    assert node.runtime.snapshots.chosen(UNREACHABLE) is None


def test_a_configured_peer_is_joined_as_the_config_file_says(
    start_node: Callable[..., RunningNode],
) -> None:
    peer = {"url": UNREACHABLE, "blobs": "lazy", "bootstrap": "snapshot"}
    node = start_node("node", sync={"peers": [peer]})
    assert node.runtime.snapshots.chosen(UNREACHABLE) == "snapshot"
