"""`modelyard gc` against a running node: what deleted repos leave is freed exactly, after its
grace period; what commits, pending mirror pushes and uploads in flight need survives.

gc runs as the console command on the node's own settings (a config file naming its data dir,
database and blob store), beside the node serving in a thread, as an operator runs it beside
`modelyard serve`. "Long ago" is made by moving the blobs' recorded times back in the database.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
import httpx
import pytest
from click.testing import CliRunner
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from sqlalchemy import text

from registry.cli import cli
from registry.domain.digest import Digest
from registry.storage import Expected, put
from registry.storage.build import build_blob_store
from registry.storage.local import LocalBlobStore
from tests.blobs import stored_blob_files, upload_leftovers
from tests.conftest import RunningNode

MiB = 1024 * 1024
BIG = 17 * MiB  # above one S3 part: an S3 store takes it as a multipart upload
HOUR = 3600


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def blob_file(hex_: str) -> str:
    return f"blobs/blake3/{hex_[:2]}/{hex_}"


def gc_config(node: RunningNode, tmp_path: Path) -> Path:
    """The node's settings as an operator's config file (data dir, database, blob store)."""
    s = node.settings
    keys = {
        "data_dir": str(s.data_dir),
        "database_url": s.database_url,
        "blob_store": s.blob_store,
        "blob_store_endpoint": s.blob_store_endpoint,
    }
    config = tmp_path / "gc.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items() if v))
    return config


@dataclass
class Gc:
    config: Path

    def __call__(self, *args: str) -> dict[str, object]:
        result = CliRunner().invoke(cli, ["gc", "--config", str(self.config), "--json", *args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert isinstance(report, dict)
        return report


def freed(report: dict[str, object]) -> dict[str, int]:
    items = report["items"]
    assert isinstance(items, list)
    return {item["blake3"]: item["size"] for item in items}


def reasons(report: dict[str, object]) -> set[str]:
    items = report["items"]
    assert isinstance(items, list)
    return {item["reason"] for item in items}


def age_blobs(node: RunningNode, seconds: int) -> None:
    """Move every blob's recorded times back, as if stored `seconds` earlier."""
    with node.runtime.db.engine.begin() as connection:
        connection.execute(
            text("UPDATE blob SET created_ms = created_ms - :d, wanted_ms = wanted_ms - :d"),
            {"d": seconds * 1000},
        )


def status(node: RunningNode) -> tuple[int, int]:
    with node.client() as client:
        body = client.get("/v1/status").json()
    return body["blobs"], body["blob_bytes"]


def download(node: RunningNode, repo: str, path: str, tmp_path: Path, revision: str) -> bytes:
    local = hf_hub_download(
        repo,
        path,
        revision=revision,
        endpoint=node.url,
        token=node.admin_token,
        cache_dir=tmp_path / "hf-cache",
    )
    return Path(local).read_bytes()


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


@pytest.fixture
def gc(node: RunningNode, tmp_path: Path) -> Gc:
    return Gc(gc_config(node, tmp_path))


@dataclass
class TwoRepos:
    """Repos A and B sharing a blob; A deleted. `a_only`: A's blobs (hex -> size); `b_files`:
    every file B holds, at the revision that holds it."""

    a_only: dict[str, int]
    b_files: list[tuple[str, str, bytes]]  # (revision, path, content)
    a_contents: dict[str, bytes]


@pytest.fixture
def two_repos(node: RunningNode, api: HfApi, tmp_path: Path) -> TwoRepos:
    shared = os.urandom(2 * MiB)
    a_big, a_notes = os.urandom(BIG), b"only in A\n" * 100
    b_weights, b_old, b_new, b_pr = os.urandom(MiB), b"v1 of B\n", b"v2 of B\n", os.urandom(1000)
    api.create_repo("admin/a")
    api.create_repo("admin/b")
    ops_a = [
        CommitOperationAdd("shared.safetensors", shared),
        CommitOperationAdd("a.safetensors", a_big),
        CommitOperationAdd("notes.txt", a_notes),
    ]
    api.create_commit("admin/a", ops_a, commit_message="A")
    api.create_tag("admin/a", tag="v1")
    ops_b = [
        CommitOperationAdd("shared.safetensors", shared),
        CommitOperationAdd("weights.bin", b_weights),
        CommitOperationAdd("notes.txt", b_old),
    ]
    first = api.create_commit("admin/b", ops_b, commit_message="B v1").oid
    api.create_commit("admin/b", [CommitOperationAdd("notes.txt", b_new)], commit_message="v2")
    api.create_tag("admin/b", tag="v2")
    pr = api.create_commit(
        "admin/b", [CommitOperationAdd("pr.bin", b_pr)], commit_message="a PR", create_pr=True
    )
    pr_ref = f"refs/pr/{pr.pr_num}"
    # Served once, so an S3 store remembers their sizes (what gc must not be fooled by later).
    assert download(node, "admin/a", "a.safetensors", tmp_path, "main") == a_big
    assert download(node, "admin/a", "notes.txt", tmp_path, "v1") == a_notes
    api.delete_repo("admin/a")
    return TwoRepos(
        a_only={b3(a_big): len(a_big), b3(a_notes): len(a_notes)},
        b_files=[
            ("main", "shared.safetensors", shared),
            ("main", "weights.bin", b_weights),
            ("v2", "notes.txt", b_new),
            (first, "notes.txt", b_old),  # an old commit: its file was overwritten since
            (pr_ref, "pr.bin", b_pr),  # only on a PR ref
        ],
        a_contents={"a.safetensors": a_big, "notes.txt": a_notes},
    )


def test_gc_dry_run_reports_exactly_the_deleted_repos_blobs_and_changes_nothing(
    node: RunningNode, gc: Gc, two_repos: TwoRepos
) -> None:
    files, rows = stored_blob_files(node.settings), status(node)
    report = gc("--grace", "0")
    assert report["deleted"] is False
    assert freed(report) == two_repos.a_only
    assert report["bytes"] == sum(two_repos.a_only.values())
    assert reasons(report) == {"unreferenced"}
    assert stored_blob_files(node.settings) == files and status(node) == rows
    text_report = CliRunner().invoke(cli, ["gc", "--config", str(gc.config), "--grace", "0"])
    assert text_report.exit_code == 0, text_report.output
    assert "would free 2 blobs" in text_report.stdout and "dry run" in text_report.stdout


def test_gc_keeps_blobs_younger_than_the_grace_period(
    node: RunningNode, gc: Gc, two_repos: TwoRepos
) -> None:
    files = stored_blob_files(node.settings)
    report = gc("--delete")  # the default grace: 24 h, and A was deleted just now
    assert (report["blobs"], report["kept_recent"]) == (0, len(two_repos.a_only))
    age_blobs(node, 2 * HOUR)
    assert gc("--delete", "--grace", str(3 * HOUR))["blobs"] == 0
    assert stored_blob_files(node.settings) == files


def test_gc_delete_frees_exactly_the_unreferenced_blobs_and_keeps_the_rest_downloadable(
    node: RunningNode, gc: Gc, two_repos: TwoRepos, tmp_path: Path
) -> None:
    files = stored_blob_files(node.settings)
    count, size = status(node)
    report = gc("--delete", "--grace", "0")
    assert report["deleted"] is True
    assert freed(report) == two_repos.a_only
    assert stored_blob_files(node.settings) == files - {blob_file(h) for h in two_repos.a_only}
    assert status(node) == (count - 2, size - sum(two_repos.a_only.values()))
    for revision, path, content in two_repos.b_files:
        assert download(node, "admin/b", path, tmp_path / "after", revision) == content
    assert gc("--delete", "--grace", "0")["blobs"] == 0  # nothing left to free


def test_gc_freed_content_can_be_uploaded_again(
    node: RunningNode, api: HfApi, gc: Gc, two_repos: TwoRepos, tmp_path: Path
) -> None:
    assert freed(gc("--delete", "--grace", "0")) == two_repos.a_only
    api.create_repo("admin/again")
    ops = [CommitOperationAdd(p, data) for p, data in two_repos.a_contents.items()]
    api.create_commit("admin/again", ops, commit_message="the same bytes as A")
    for path, data in two_repos.a_contents.items():
        assert download(node, "admin/again", path, tmp_path / "again", "main") == data
    assert {blob_file(h) for h in two_repos.a_only} <= stored_blob_files(node.settings)


def test_gc_keeps_an_uploaded_blob_until_its_commit_within_the_grace_period(
    node: RunningNode, api: HfApi, gc: Gc, tmp_path: Path
) -> None:
    api.create_repo("admin/c")
    data = os.urandom(MiB)
    op = CommitOperationAdd("model.safetensors", data)
    api.preupload_lfs_files("admin/c", [op])  # uploaded; the commit comes later
    assert blob_file(b3(data)) in stored_blob_files(node.settings)
    report = gc("--delete", "--grace", str(HOUR))
    assert report["blobs"] == 0 and report["kept_recent"] == 1
    api.create_commit("admin/c", [op], commit_message="later")
    assert download(node, "admin/c", "model.safetensors", tmp_path, "main") == data


def test_gc_keeps_a_blob_an_lfs_batch_just_reused_for_a_new_upload(
    node: RunningNode, api: HfApi, gc: Gc, tmp_path: Path
) -> None:
    old, other = os.urandom(MiB), os.urandom(MiB)
    api.create_repo("admin/gone")
    api.create_commit(
        "admin/gone",
        [CommitOperationAdd("old.bin", old), CommitOperationAdd("other.bin", other)],
        commit_message="soon deleted",
    )
    api.delete_repo("admin/gone")
    age_blobs(node, 2 * HOUR)  # both unreferenced, stored two hours ago
    api.create_repo("admin/d")
    puts = node.log.count("PUT", "/lfs/objects/")
    op = CommitOperationAdd("old.bin", old)
    api.preupload_lfs_files("admin/d", [op])  # the batch answers "already stored"
    assert node.log.count("PUT", "/lfs/objects/") == puts  # so the client sent nothing
    report = gc("--delete", "--grace", "0")  # even so: an upload relied on `old` just now
    assert freed(report) == {b3(other): len(other)}
    api.create_commit("admin/d", [op], commit_message="reuses stored bytes")
    assert download(node, "admin/d", "old.bin", tmp_path, "main") == old


def test_gc_commit_of_a_blob_gc_took_fails_cleanly_then_succeeds_after_upload(
    node: RunningNode, api: HfApi, gc: Gc, tmp_path: Path
) -> None:
    api.create_repo("admin/late")
    head = api.model_info("admin/late").sha
    data = os.urandom(MiB)
    op = CommitOperationAdd("late.safetensors", data)
    api.preupload_lfs_files("admin/late", [op])
    age_blobs(node, 2 * HOUR)  # the client waited longer than the grace period
    assert freed(gc("--delete", "--grace", str(HOUR))) == {b3(data): len(data)}
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_commit("admin/late", [op], commit_message="too late")
    assert refused.value.response.status_code == 400
    assert refused.value.response.headers["x-registry-error"] == "MissingObject"
    assert api.model_info("admin/late").sha == head  # no commit pointing at missing bytes
    again = CommitOperationAdd("late.safetensors", data)  # uploads it again
    api.create_commit("admin/late", [again], commit_message="uploaded again")
    assert download(node, "admin/late", "late.safetensors", tmp_path, "main") == data


class _HeldBody:
    """A request body sent in two parts, the second only once `release` is set."""

    def __init__(self, data: bytes, split: int) -> None:
        self._data, self._split = data, split
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, self._split, MiB):
            yield self._data[start : min(start + MiB, self._split)]
        assert self.release.wait(60), "the test never released the upload"
        yield self._data[self._split :]


def lfs_upload_url(node: RunningNode, repo: str, oid: str, size: int) -> str:
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    with node.client(node.admin_token) as client:
        answer = client.post(f"/{repo}.git/info/lfs/objects/batch", json=body)
    answer.raise_for_status()
    return str(answer.json()["objects"][0]["actions"]["upload"]["href"])


def wait_until(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_gc_spares_a_streaming_upload_still_writing(
    node: RunningNode, api: HfApi, gc: Gc, tmp_path: Path
) -> None:
    import hashlib

    api.create_repo("admin/stream")
    data = os.urandom(BIG + 3 * MiB)
    oid = hashlib.sha256(data).hexdigest()
    url = lfs_upload_url(node, "admin/stream", oid, len(data))
    body = _HeldBody(data, BIG)  # past one S3 part: the store holds a part already
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            answers.append(client.put(url, content=body))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: upload_leftovers(node.settings), "the upload reached the store")
        during = upload_leftovers(node.settings)
        report = gc("--delete")  # the default grace
        assert (report["blobs"], report["uploads"]) == (0, 0)
        assert upload_leftovers(node.settings) == during
    finally:
        body.release.set()
        sender.join(timeout=120)
    assert answers and answers[0].status_code == 200, answers
    api.create_commit(
        "admin/stream", [CommitOperationAdd("big.bin", data)], commit_message="after gc"
    )
    assert download(node, "admin/stream", "big.bin", tmp_path, "main") == data


def test_gc_keeps_blobs_a_pending_mirror_push_still_needs(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = start_node("paused", mirror={"enabled": False})  # pushes wait in the outbox
    api = HfApi(endpoint=node.url, token=node.admin_token)
    with node.client(node.admin_token) as client:
        mirror = {"name": "later", "kind": "node", "url": "http://127.0.0.1:9", "token": "t"}
        client.post("/v1/mirrors", json=mirror).raise_for_status()
    data = os.urandom(MiB)
    api.create_repo("admin/mirrored")
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/mirrored")
    api.delete_repo("admin/mirrored")
    report = Gc(gc_config(node, tmp_path))("--delete", "--grace", "0")
    # w.bin, and .gitattributes of the repo's first commit: both still to push.
    assert (report["blobs"], report["kept_for_mirrors"]) == (0, 2)
    assert blob_file(b3(data)) in stored_blob_files(node.settings)


def test_gc_frees_stored_bytes_no_record_names_once_they_are_old(node: RunningNode, gc: Gc) -> None:
    data = os.urandom(1000)  # as a crash between storing and recording leaves them
    store = build_blob_store(node.settings)
    put(store, Expected(), [data])
    # Stored just now: maybe an upload about to record them, kept even with grace 0.
    assert gc("--delete", "--grace", "0")["kept_recent"] == 1
    if not isinstance(store, LocalBlobStore):
        return  # an S3 object's time cannot be moved back; its listing time is a contract test
    long_ago = time.time() - 2 * HOUR
    os.utime(store.path_of(Digest(b3(data))), (long_ago, long_ago))
    report = gc("--delete", "--grace", "0")
    assert report["items"] == [{"blake3": b3(data), "size": 1000, "reason": "unrecorded"}]
    assert blob_file(b3(data)) not in stored_blob_files(node.settings)


def test_gc_grace_comes_from_the_node_settings_unless_given(gc: Gc, two_repos: TwoRepos) -> None:
    gc.config.write_text(gc.config.read_text() + "\n[gc]\ngrace = 0\n")
    assert gc("--grace", str(HOUR))["blobs"] == 0  # the flag wins
    assert freed(gc("--delete")) == two_repos.a_only


def test_gc_refuses_a_data_dir_without_a_node(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["gc", "--data-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no node in" in result.output
