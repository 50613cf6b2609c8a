"""The change feed's wire format, byte for byte, against a recording (a golden test).

Nodes of the previous version must keep replicating with a new one, so `GET /v1/sync/changes`
must not change by one byte. This test drives a scenario through the stock huggingface_hub
client and the native API on a fresh node (and a replica relaying its entries), reads the feed
as the admin, as anonymous (the privacy filter) and as a repo owner, and compares every page
with `tests/golden/feed_scenario.json` after normalising only what is random or
time-dependent by nature (see `tests/feed_golden.py`): commit ids, incarnations, epochs and
millisecond times. Commit ids are also recomputed from their bodies, so their derivation is held.

Re-recording: `MODELYARD_RECORD_GOLDEN=1 .venv/bin/python -m pytest
tests/integration/test_feed_golden.py` rewrites both fixtures (normalised and raw) instead of
comparing. Do it only for a deliberate wire change, explained in the commit that carries the new
fixtures (and only once nodes of the previous version can follow it); never set it in CI.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from tests.conftest import ADMIN_TOKEN, FAST_SYNC, RunningNode
from tests.feed_golden import (
    KEPT_HEADERS,
    NORMALISED_FIXTURE,
    RAW_FIXTURE,
    Exchange,
    Normaliser,
    check_commit_ids,
    feed_entries,
    first_difference,
    load,
    save,
)

# Read at import: the autouse fixture clears every MODELYARD_* variable before each test.
RECORD = os.environ.get("MODELYARD_RECORD_GOLDEN") == "1"
ABOUT = (
    "GET /v1/sync/changes pages recorded by tests/integration/test_feed_golden.py; "
    "re-record only for a deliberate, explained wire change (see that test's docstring)"
)
PAGE = 7  # the page size of the paged walks: pages end mid-commit and mid-repo


def safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}})
    return struct.pack("<Q", len(header)) + header.encode() + bytes(range(8))


def drive_scenario(node: RunningNode, alice_token: str, tmp_path: Path) -> None:
    """Every kind of change entry: repo.upsert, commit.add, ref.set, ref.delete, repo.settings,
    repo.move, repo.delete, discussion.event, commit.squash, file.purge.

    Each commit only adds paths that sort after every path already in the repo. A commit's
    tree lists its parent's rows in the order the database returns them (no ORDER BY: by path
    through SQLite's primary key, in insertion order from a Postgres heap scan, by path again if
    Postgres picks the index), then the new paths. Appending in path order makes every plan
    agree, so one recording holds for both backends.
    """
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    repo = "admin/golden"
    api.create_repo(repo)
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n# Golden\n",
        path_in_repo="README.md",
        repo_id=repo,
        commit_message="add the card",
        commit_description="Café ✓: a message with non-ASCII text",
    )
    folder = tmp_path / "folder"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.json").write_text('{"a": 1}')
    (folder / "nested" / "b.txt").write_text("b")
    (folder / "nested" / "ünï côdé.txt").write_text("grüße")
    api.upload_folder(
        folder_path=folder, path_in_repo="configs", repo_id=repo, commit_message="add a folder"
    )
    api.upload_file(  # LFS: *.safetensors is in the default .gitattributes
        path_or_fileobj=safetensors(),
        path_in_repo="weights.safetensors",
        repo_id=repo,
        commit_message="add weights",
    )
    api.delete_file("configs/a.json", repo_id=repo, commit_message="drop a.json")
    api.create_branch(repo, branch="dev")
    api.create_tag(repo, tag="v1", tag_message="first")
    api.create_commit(
        repo,
        [
            CommitOperationAdd("wip.txt", b"on dev"),
            CommitOperationDelete("configs/nested/b.txt"),
        ],
        commit_message="work on dev",
        revision="dev",
    )
    api.delete_tag(repo, tag="v1")
    api.delete_branch(repo, branch="dev")
    with node.client(ADMIN_TOKEN) as http:  # the native metadata route: a commit to the card
        answer = http.put(
            f"/v1/repos/model/{repo}/metadata",
            json={"kind": "LoRA", "base_model": "SDXL 1.0", "tags": ["golden"]},
        )
    assert answer.status_code == 200, answer.text

    alice = HfApi(endpoint=node.url, token=alice_token)  # private: hidden from anonymous
    alice.create_repo("alice/secret", private=True)
    alice.upload_file(
        path_or_fileobj=b"hidden",
        path_in_repo="secret.txt",
        repo_id="alice/secret",
        commit_message="add a secret",
    )
    api.create_repo("admin/data", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"x,y\n1,2\n",
        path_in_repo="train.csv",
        repo_id="admin/data",
        repo_type="dataset",
        commit_message="add rows",
    )
    api.create_repo("admin/doomed")
    api.delete_repo("admin/doomed")
    api.create_repo("admin/doomed")  # again: a new incarnation
    alice.delete_repo("alice/secret")  # a private tombstone
    # repo.settings: gated, then private (served to everyone: peers holding the public repo
    # must hide it), then public again
    api.update_repo_settings("admin/data", repo_type="dataset", gated="auto")
    api.update_repo_settings("admin/data", repo_type="dataset", private=True)
    api.update_repo_settings("admin/data", repo_type="dataset", private=False, gated=False)
    api.move_repo(from_id="admin/data", to_id="admin/data-moved", repo_type="dataset")
    api.upload_file(  # entries after a move name the repo by its new key
        path_or_fileobj=b"x,y\n3,4\n",
        path_in_repo="valid.csv",
        repo_id="admin/data-moved",
        repo_type="dataset",
        commit_message="add more rows",
    )
    # Discussions, after the entries recorded before they existed (which keep their serials).
    api.create_discussion(repo, "A question", description="Which license?")
    api.comment_discussion(repo, 1, "MIT")
    api.upload_file(  # a PR (discussion.event with a commit event), merged
        path_or_fileobj=b"proposed",
        path_in_repo="zz-proposal.txt",
        repo_id=repo,
        commit_message="propose a file",
        create_pr=True,
    )
    api.merge_pull_request(repo, 2)
    # History rewrites, last: a squash (a commit and ref move, then the commits it left
    # behind, newest first), then permanently deleting the weights (kept on the dev commit).
    api.super_squash_history(repo, commit_message="squash main")
    weights = [f for f in api.list_lfs_files(repo) if f.filename == "weights.safetensors"]
    api.permanently_delete_lfs_files(repo, weights)


def read_feed(
    node: RunningNode,
    name: str,
    reader: str,
    token: str | None,
    params: dict[str, int],
    headers: dict[str, str] | None = None,
) -> Exchange:
    with node.client(token) as http:
        response = http.get("/v1/sync/changes", params=params, headers=headers or {})
    kept = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
    request = {"node": name, "reader": reader, "params": params, "headers": headers or {}}
    label = f"{name}/{reader}/" + "&".join(f"{k}={v}" for k, v in params.items())
    if headers:
        label += "/" + ",".join(f"{k}={v}" for k, v in headers.items())
    return Exchange(label, request, response.status_code, kept, response.content)


def read_all(node: RunningNode, name: str, readers: dict[str, str | None]) -> list[Exchange]:
    """Each reader's whole feed in one page, then in pages of PAGE; the empty page at the head;
    the two refusals (a cursor beyond the head, a wrong expected node)."""
    exchanges = []
    for reader, token in readers.items():
        whole = read_feed(node, name, reader, token, {"since": 0})
        exchanges.append(whole)
        since, head = 0, int(whole.headers["x-modelyard-serial"])
        while since < head:
            page = read_feed(node, name, reader, token, {"since": since, "limit": PAGE})
            exchanges.append(page)
            since = int(json.loads(page.body)["last_serial"])
        exchanges.append(read_feed(node, name, reader, token, {"since": head, "wait": 0}))
    exchanges.append(read_feed(node, name, "anonymous", None, {"since": head + 1}))
    exchanges.append(
        read_feed(node, name, "anonymous", None, {"since": 0}, {"X-Modelyard-Expect-Node": "x"})
    )
    return exchanges


def replicate(node: RunningNode, replica: RunningNode) -> None:
    """The replica, with a repo of its own first (so its serials differ from the relayed
    entries' origin serials), pulls everything the node has (as the admin: private too)."""
    HfApi(endpoint=replica.url, token=ADMIN_TOKEN).create_repo("admin/replica-own")
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN})
        assert added.status_code == 201, added.text
        with node.client() as home:
            head = int(home.get("/v1/sync/changes").headers["x-modelyard-serial"])
        deadline = time.monotonic() + 30
        while http.get("/v1/peers").json()[0]["cursor"] < head:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.05)


def test_feed_wire_format_matches_the_golden_recording(
    node: RunningNode,
    start_node: Callable[..., RunningNode],
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    started_ms = time.time_ns() // 1_000_000
    alice = make_token("alice")
    drive_scenario(node, alice, tmp_path)
    replica = start_node("replica", sync=FAST_SYNC)
    replicate(node, replica)
    exchanges = read_all(node, "node", {"admin": ADMIN_TOKEN, "anonymous": None, "alice": alice})
    exchanges += read_all(replica, "replica", {"admin": ADMIN_TOKEN, "anonymous": None})
    ended_ms = time.time_ns() // 1_000_000

    entries = feed_entries(exchanges)
    assert {e["kind"] for e in entries} == {
        "repo.upsert",
        "repo.delete",
        "commit.add",
        "ref.set",
        "ref.delete",
        "repo.settings",
        "repo.move",
        "discussion.event",
        "commit.squash",
        "file.purge",
    }
    assert check_commit_ids(entries) > 0
    times = [e["created_ms"] for e in entries] + [
        e["body"]["created_ms"] for e in entries if "created_ms" in e["body"]
    ]
    assert all(started_ms - 1000 <= t <= ended_ms + 1000 for t in times)
    normalised = Normaliser().exchanges(exchanges)
    if RECORD:
        save(RAW_FIXTURE, exchanges, ABOUT)
        save(NORMALISED_FIXTURE, normalised, ABOUT)
        return
    recorded = load(NORMALISED_FIXTURE)
    assert [e.name for e in normalised] == [e.name for e in recorded]
    for got, want in zip(normalised, recorded, strict=True):
        assert (got.status, got.headers) == (want.status, want.headers), got.name
        assert got.body == want.body, f"{got.name}: " + first_difference(want.body, got.body)
