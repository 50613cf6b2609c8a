"""Batch apply: a home node's real feed applied to fresh replicas (their own runtimes, no
pullers) in one large batch, page by page, one entry at a time, and with entries repeated."""

from __future__ import annotations

from pathlib import Path

import httpx
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from registry.domain.access import CONSOLE
from registry.domain.changes import ChangeEntry
from registry.domain.replication import FeedPosition
from registry.runtime import Runtime
from registry.wire import FeedOut
from sync.planner import plan
from tests.conftest import ADMIN_TOKEN, RunningNode, node_settings

Page = tuple[list[ChangeEntry], FeedPosition]


def write_history(node: RunningNode) -> None:
    """Repos with commits whose files carry over, tags (one deleted), a deleted file and a
    deleted repo made again."""
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    for r in range(3):
        repo = f"admin/batch{r}"
        home.create_repo(repo)
        for i in range(4):
            ops: list[CommitOperationAdd | CommitOperationDelete]
            ops = [CommitOperationAdd(f"f{i}.txt", f"{r}-{i}".encode())]
            if i == 3:
                ops.append(CommitOperationDelete("f0.txt"))
            home.create_commit(repo, ops, commit_message=f"c{i}")
        home.create_tag(repo, tag="v1")
        home.create_tag(repo, tag="gone")  # set and deleted in one batch
        home.delete_tag(repo, tag="gone")
    home.create_repo("admin/gone")
    home.upload_file(path_or_fileobj=b"g", path_in_repo="g.txt", repo_id="admin/gone")
    home.delete_repo("admin/gone")
    home.create_repo("admin/gone")  # again: a new incarnation (maybe the old row id), new refs
    home.upload_file(path_or_fileobj=b"h", path_in_repo="h.txt", repo_id="admin/gone")
    home.create_tag("admin/gone", tag="v2")


def feed(node: RunningNode, limit: int) -> list[Page]:
    pages: list[Page] = []
    since = 0
    with httpx.Client(base_url=node.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as h:
        while True:
            params = {"since": since, "limit": limit}
            page = FeedOut.model_validate(h.get("/v1/sync/changes", params=params).json())
            if page.last_serial == since:
                return pages
            entries = [ChangeEntry(**e.model_dump()) for e in page.entries]
            pages.append((entries, FeedPosition(page.last_serial, page.last_chain, page.head)))
            since = page.last_serial


def replica(tmp_path: Path, name: str) -> tuple[Runtime, str]:
    runtime = Runtime.open(node_settings(tmp_path / name))
    peer = runtime.peers.add(CONSOLE, "http://127.0.0.1:9", None, "lazy")  # never pulled
    return runtime, peer.id


def state(runtime: Runtime) -> dict[str, object]:
    """What a replica holds: repos with home and incarnation, refs, commits with their trees
    (each file's last commit too), and its log's (origin, origin serial, kind)."""
    with runtime.db.read() as tx:
        repos = {}
        for key in ("model/admin/batch0", "model/admin/batch1", "model/admin/batch2"):
            repo = tx.repos.by_key(key)
            assert repo is not None
            commits = sorted(c.id for c in tx.commits.of_repo(repo.id))
            trees = tx.commits.trees(commits)
            repos[key] = (
                repo.home_node,
                repo.incarnation,
                tx.refs.of_repo(repo.id),
                {
                    c: [(f.entry.path, f.entry.blake3, f.last_commit) for f in t]
                    for c, t in trees.items()
                },
            )
        again = tx.repos.by_key("model/admin/gone")
        gone = None if again is None else (again.incarnation, tx.refs.of_repo(again.id))
        log = [
            (e.origin, e.origin_serial, e.kind)
            for e in (x.entry for x in tx.changes.page(0, 10_000))
        ]
    return {"repos": repos, "gone": gone, "log": log}


def apply_all(runtime: Runtime, peer: str, pages: list[Page]) -> None:
    for entries, position in pages:
        runtime.replication.apply(peer, entries, position, plan)


def test_batch_apply_ends_in_the_state_of_one_by_one_apply(
    node: RunningNode, tmp_path: Path
) -> None:
    write_history(node)
    one_batch, one_by_one = feed(node, 5000), feed(node, 1)
    assert len(one_batch) == 1 and len(one_by_one) > 30
    fast, fast_peer = replica(tmp_path, "fast")
    slow, slow_peer = replica(tmp_path, "slow")
    try:
        apply_all(fast, fast_peer, one_batch)
        apply_all(slow, slow_peer, one_by_one)
        assert state(fast) == state(slow)
        again = state(fast)["gone"]
        assert isinstance(again, tuple) and len(again[1]) == 2  # made again: main and v2
        assert fast.peers.get(fast_peer).cursor == slow.peers.get(slow_peer).cursor > 0
    finally:
        fast.close()
        slow.close()


def test_batch_apply_applies_an_entry_repeated_within_and_across_batches_once(
    node: RunningNode, tmp_path: Path
) -> None:
    write_history(node)
    ((entries, position),) = feed(node, 5000)
    runtime, peer = replica(tmp_path, "r")
    try:
        half = len(entries) // 2
        first = FeedPosition(entries[half - 1].serial, entries[half - 1].chain, position.head)
        # the first half twice in one batch, then all of it (the first half again) twice
        runtime.replication.apply(peer, entries[:half] + entries[:half], first, plan)
        runtime.replication.apply(peer, entries + entries[half:], position, plan)
        runtime.replication.apply(peer, entries, position, plan)
        held = state(runtime)
        log = held["log"]
        assert isinstance(log, list)
        assert len(log) == len(set(log)) == len(entries)
        reference, reference_peer = replica(tmp_path, "reference")
        try:
            apply_all(reference, reference_peer, [(entries, position)])
            assert held == state(reference)
        finally:
            reference.close()
    finally:
        runtime.close()
