"""History rewrites reach replicas: after `super_squash_history` at the home a replica lists one
commit and the old ones are no revision; after `permanently_delete_lfs_files` a download of the
file on the replica is EntryNotFound at every revision; gc on the replica frees the bytes. A
replica that first pulls after the home's gc never asks for the bytes gone."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode
from tests.integration.test_federation_basic import wait_for
from tests.integration.test_squash_and_lfs import b3, collect, download


def add(path: str, data: bytes) -> CommitOperationAdd:
    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)


def peer_with(replica: RunningNode, home: RunningNode) -> None:
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": home.url, "token": ADMIN_TOKEN})
    assert added.status_code == 201, added.text


def caught_up(replica: RunningNode, home: RunningNode) -> Callable[[], bool]:
    """The replica read the home's whole feed and holds every blob its commits name."""

    def check() -> bool:
        with home.client() as http:
            head = int(http.get("/v1/sync/changes").headers["x-modelyard-serial"])
        with replica.client(ADMIN_TOKEN) as http:
            peers = http.get("/v1/peers").json()
        return peers[0]["cursor"] >= head and not replica.runtime.replication.missing_blobs()

    return check


def gc_on(node: RunningNode, tmp_path: Path) -> dict[str, int]:
    """What `modelyard gc --delete --grace 0` frees on the node."""
    config_dir = tmp_path / f"gc-{node.settings.node_id}"
    config_dir.mkdir(exist_ok=True)
    return collect(node, config_dir)


@pytest.fixture
def replica(node: RunningNode, start_node: Callable[..., RunningNode]) -> RunningNode:
    running = start_node("replica", sync=FAST_SYNC)
    peer_with(running, node)
    return running


def test_a_squash_at_the_home_drops_the_old_history_on_the_replica(
    node: RunningNode, replica: RunningNode, tmp_path: Path
) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    theirs = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    repo = "admin/squashed"
    api.create_repo(repo)
    old, weights = os.urandom(3000), os.urandom(4000)
    first = api.create_commit(repo, [add("w.bin", old)], commit_message="one").oid
    api.create_commit(repo, [add("w.bin", weights)], commit_message="two")
    wait_for(caught_up(replica, node), timeout=30)
    assert len(theirs.list_repo_commits(repo)) == 3
    assert download(replica, repo, "w.bin", first, tmp_path / "c0") == old

    api.super_squash_history(repo, commit_message="Squashed")
    squashed = api.model_info(repo).sha
    wait_for(caught_up(replica, node), timeout=30)

    commits = theirs.list_repo_commits(repo)
    assert [(c.commit_id, c.title) for c in commits] == [(squashed, "Squashed")]
    with pytest.raises(RevisionNotFoundError):
        theirs.list_repo_commits(repo, revision=first)
    with pytest.raises(RevisionNotFoundError):
        download(replica, repo, "w.bin", first, tmp_path / "c1")
    assert download(replica, repo, "w.bin", "main", tmp_path / "c2") == weights
    freed_there = gc_on(replica, tmp_path)
    assert b3(old) in freed_there and b3(weights) not in freed_there
    assert download(replica, repo, "w.bin", "main", tmp_path / "c3") == weights


def test_a_purge_at_the_home_reaches_replicas_old_and_new(
    node: RunningNode,
    replica: RunningNode,
    start_node: Callable[..., RunningNode],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    theirs = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    repo = "admin/leaky"
    api.create_repo(repo)
    secret, fixed = os.urandom(5000), os.urandom(6000)
    leaked = api.create_commit(repo, [add("model.bin", secret)], commit_message="leak").oid
    api.create_commit(repo, [add("model.bin", fixed)], commit_message="fix")
    wait_for(caught_up(replica, node), timeout=30)
    assert download(replica, repo, "model.bin", leaked, tmp_path / "c0") == secret

    leak = [f for f in api.list_lfs_files(repo) if f.size == 5000]
    api.permanently_delete_lfs_files(repo, leak)
    wait_for(caught_up(replica, node), timeout=30)

    with pytest.raises(EntryNotFoundError):
        download(node, repo, "model.bin", leaked, tmp_path / "c1")
    with pytest.raises(EntryNotFoundError) as on_replica:
        download(replica, repo, "model.bin", leaked, tmp_path / "c2")
    assert "permanently deleted" in str(on_replica.value)
    with node.client(ADMIN_TOKEN) as home_http, replica.client(ADMIN_TOKEN) as replica_http:
        path = f"/{repo}/resolve/{leaked}/model.bin"
        home_answer, replica_answer = home_http.get(path), replica_http.get(path)
    assert replica_answer.status_code == home_answer.status_code == 404
    assert replica_answer.json()["error"] == home_answer.json()["error"]
    assert replica_answer.headers["x-error-code"] == "EntryNotFound"
    assert "model.bin" not in theirs.list_repo_files(repo, revision=leaked)
    assert download(replica, repo, "model.bin", "main", tmp_path / "c3") == fixed
    freed_there = gc_on(replica, tmp_path)
    assert b3(secret) in freed_there and b3(fixed) not in freed_there

    # The home frees the bytes too; a replica peered only now replays the whole feed (the
    # commit naming the file, then the purge) and never waits for bytes no node holds.
    assert b3(secret) in gc_on(node, tmp_path)
    late = start_node("late", sync=FAST_SYNC)

    def fetched() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "sync.fetcher"]

    with caplog.at_level(logging.INFO, logger="sync.fetcher"):
        peer_with(late, node)
        wait_for(caught_up(late, node), timeout=30)
        # Bytes follow the metadata, in the background.
        wait_for(lambda: any(b3(fixed) in m for m in fetched()), timeout=30)
    assert not any(b3(secret) in m for m in fetched())  # never asked for
    with pytest.raises(EntryNotFoundError):
        download(late, repo, "model.bin", leaked, tmp_path / "c4")
    assert download(late, repo, "model.bin", "main", tmp_path / "c5") == fixed
