"""A snapshot loaded into an empty node (common actions written as plain rows, the rest
handed to the replay apply) ends in exactly the state replaying the same entries gives."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from sqlalchemy import text

from registry.domain.access import CONSOLE
from registry.domain.changes import ChangeEntry
from registry.domain.names import RepoId, RepoType
from registry.domain.replication import FeedPosition
from registry.domain.snapshot import SnapshotHeader, parse_header, parse_line
from registry.runtime import Runtime
from sync.planner import plan
from tests.conftest import ADMIN_TOKEN, RunningNode, node_settings

TABLES = {
    "repos": "SELECT type, namespace, name, private, gated, home_node, incarnation, created_ms,"
    " updated_ms, ref_version FROM repo ORDER BY type, namespace, name",
    "refs": "SELECT r.namespace, r.name, f.name, f.commit_id, f.version FROM ref f"
    " JOIN repo r ON r.id = f.repo_id ORDER BY 1, 2, 3",
    "commits": 'SELECT id, parent, author, title, message, created_ms FROM "commit" ORDER BY id',
    "files": "SELECT commit_id, path, blake3, sha256, size, lfs, git_sha1, last_commit"
    " FROM tree_entry ORDER BY commit_id, path",
    "log": "SELECT serial, origin, origin_serial, kind, repo, private, body, chain FROM change"
    " ORDER BY serial",
    "tombstones": "SELECT * FROM tombstone ORDER BY 1, 2",
    "discussions": "SELECT num, title, status FROM discussion ORDER BY num",
}


def write_history(node: RunningNode) -> None:
    """Repos (one private) with commits whose files carry over, branches and tags (one moved
    twice), settings changed, a discussion, a moved repo and a deleted one."""
    hub = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    for r in range(6):
        repo = f"admin/r{r}"
        hub.create_repo(repo, private=r == 5)
        for i in range(3):
            ops: list[CommitOperationAdd | CommitOperationDelete]
            ops = [CommitOperationAdd(f"f{i}.txt", f"{r}-{i}".encode())]
            if i == 2:
                ops.append(CommitOperationDelete("f0.txt"))
            hub.create_commit(repo, ops, commit_message=f"c{i}")
        hub.create_branch(repo, branch="dev")
        hub.create_tag(repo, tag="v1")
    hub.delete_tag("admin/r0", tag="v1")
    hub.create_tag("admin/r0", tag="v1")  # the tag moved twice: the snapshot keeps the last
    hub.update_repo_settings("admin/r1", private=True)
    hub.create_discussion("admin/r2", title="A question")
    hub.move_repo("admin/r3", "admin/moved")
    hub.delete_repo("admin/r4")
    for r in (0, 1, 2):  # common actions again after the rare ones
        hub.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id=f"admin/r{r}")
    hub.create_repo("admin/last")


def snapshot(node: RunningNode) -> tuple[SnapshotHeader, list[ChangeEntry]]:
    header = node.runtime.snapshots.header()
    body = b"".join(node.runtime.snapshots.stream(CONSOLE, header)).splitlines(keepends=True)
    entries = [parse_line(line) for line in body[1:-1]]
    assert all(isinstance(e, ChangeEntry) for e in entries)
    return parse_header(body[0]), entries  # type: ignore[return-value]


def replica(tmp_path: Path, name: str) -> tuple[Runtime, str]:
    runtime = Runtime.open(node_settings(tmp_path / name))
    peer = runtime.peers.add(CONSOLE, "http://127.0.0.1:9", None, "lazy")  # never pulled
    return runtime, peer.id


def state(runtime: Runtime) -> dict[str, list[tuple[object, ...]]]:
    with runtime.db.engine.connect() as connection:
        return {
            name: [tuple(row) for row in connection.execute(text(query))]
            for name, query in TABLES.items()
        }


def chunks(entries: list[ChangeEntry], size: int) -> Iterator[list[ChangeEntry]]:
    for i in range(0, len(entries), size):
        yield entries[i : i + size]


@pytest.mark.parametrize("size", [3, 10_000])
def test_snapshot_load_ends_in_the_state_replay_gives(
    node: RunningNode, tmp_path: Path, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    write_history(node)
    header, entries = snapshot(node)
    loaded, loaded_peer = replica(tmp_path, "loaded")
    replayed, replayed_peer = replica(tmp_path, "replayed")
    try:
        with caplog.at_level(logging.INFO, logger="registry.service.snapshot"):
            loaded.snapshots.load(loaded_peer, header, chunks(entries, size), plan)
        position = FeedPosition(header.serial, header.chain, header.serial)
        replayed.replication.apply(replayed_peer, entries, position, plan)
        held = state(loaded)
        assert held == state(replayed)
        assert len(held["repos"]) == 6 and held["discussions"] and held["tombstones"]
        home = node.runtime.snapshots.state_digest(CONSOLE)
        assert loaded.snapshots.state_digest(CONSOLE) == home
        assert loaded.peers.get(loaded_peer).cursor == header.serial
        message = next(r.getMessage() for r in caplog.records if "snapshot applied" in r.message)
        if size > len(entries):  # one chunk, with rare actions: replayed
            assert "rows_chunks=0 replayed_chunks=1" in message
        else:  # some chunks written as rows, those with rare actions replayed
            assert "rows_chunks=0" not in message and "replayed_chunks=0" not in message
    finally:
        loaded.close()
        replayed.close()


def test_snapshot_into_a_node_holding_repos_goes_through_replay(
    node: RunningNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_history(node)
    header, entries = snapshot(node)
    runtime, peer = replica(tmp_path, "busy")
    try:
        # the replica holds a repo of its own: not empty, so every chunk is replayed
        runtime.repos.create(CONSOLE, RepoId(RepoType.MODEL, "local", "own"), private=False)
        with caplog.at_level(logging.INFO, logger="registry.service.snapshot"):
            runtime.snapshots.load(peer, header, chunks(entries, 3), plan)
        assert any("rows_chunks=0 replayed" in r.getMessage() for r in caplog.records)
        assert len(state(runtime)["repos"]) == 7
        assert runtime.snapshots.state_digest(CONSOLE).repos == 7
    finally:
        runtime.close()
