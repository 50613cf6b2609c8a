"""History rewrites through the stock client: `super_squash_history` leaves a branch one
commit and lets gc free what only the old history named; `list_lfs_files` and
`permanently_delete_lfs_files` take an LFS file out of every commit, a download of it at an
old revision then fails with EntryNotFound saying it was deleted, and gc frees its bytes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RevisionNotFoundError,
)

from mirror.outbox import Pusher
from mirror.s3_target import S3Bucket
from registry.service.xet import XetRecipes
from tests.conftest import RunningNode
from tests.integration.test_gc import Gc, age_blobs, freed, gc_config

HOUR = 3600


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def add(path: str, data: bytes) -> CommitOperationAdd:
    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)


def download(node: RunningNode, repo: str, path: str, revision: str, cache: Path) -> bytes:
    local = hf_hub_download(
        repo, path, revision=revision, endpoint=node.url, token=node.admin_token, cache_dir=cache
    )
    return Path(local).read_bytes()


def collect(node: RunningNode, tmp_path: Path) -> dict[str, int]:
    """`modelyard gc --delete --grace 0` on the node, blobs aged past any hold: what it freed."""
    age_blobs(node, 2 * HOUR)
    return freed(Gc(gc_config(node, tmp_path))("--delete", "--grace", "0"))


def test_super_squash_leaves_one_commit_and_gc_frees_the_old_history(
    node: RunningNode, tmp_path: Path, make_token: Callable[..., str]
) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    repo = "admin/squashy"
    api.create_repo(repo)
    old_weights, gone, kept, weights = (os.urandom(3000 + i) for i in range(4))
    api.create_branch(repo, branch="keep")  # another ref, from the initial commit
    api.create_commit(repo, [add("kept.bin", kept)], commit_message="kept", revision="keep")
    first = api.create_commit(
        repo, [add("w.bin", old_weights), add("gone.bin", gone)], commit_message="one"
    ).oid
    api.create_commit(
        repo,
        [
            CommitOperationDelete("gone.bin"),
            add("w.bin", weights),
            add("README.md", b"# squashy\n"),
        ],
        commit_message="two",
    )
    assert len(api.list_repo_commits(repo)) == 3

    api.super_squash_history(repo, commit_message="Squashed")

    commits = api.list_repo_commits(repo)
    assert [c.title for c in commits] == ["Squashed"]
    assert commits[0].commit_id == api.model_info(repo).sha
    assert sorted(api.list_repo_files(repo)) == [".gitattributes", "README.md", "w.bin"]
    cache = tmp_path / "hf-cache"
    assert download(node, repo, "w.bin", "main", cache) == weights
    assert len(api.list_repo_commits(repo, revision="keep")) == 2  # other refs keep history

    # The old weights and gone.bin only the squashed history named: gc frees them; what the
    # branch and the other ref still name stays, downloadable.
    freed_now = collect(node, tmp_path)
    assert {b3(old_weights), b3(gone)} <= freed_now.keys()
    assert not {b3(weights), b3(kept), b3(b"# squashy\n")} & freed_now.keys()
    assert download(node, repo, "kept.bin", "keep", tmp_path / "c2") == kept
    assert download(node, repo, "w.bin", "main", tmp_path / "c3") == weights
    # The old history is gone, as on the Hub: its commits are no revision any more.
    with pytest.raises(RevisionNotFoundError):
        download(node, repo, "gone.bin", first, tmp_path / "c4")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(repo, revision=first[:10])

    # The raw answer carries the new commit; squashing again makes a new one.
    with node.client(node.admin_token) as http:
        answer = http.post(f"/api/models/{repo}/super-squash/main", json={"message": "Again"})
    assert answer.status_code == 200, answer.text
    again = answer.json()["commitId"]
    assert [c.commit_id for c in api.list_repo_commits(repo)] == [again]

    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo, branch="no-such-branch")
    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    with pytest.raises(HfHubHTTPError) as refused:
        bob.super_squash_history(repo)
    assert refused.value.response.status_code == 403
    assert [c.commit_id for c in api.list_repo_commits(repo)] == [again]  # nothing changed


def test_lfs_files_are_listed_and_permanently_deleted(
    node: RunningNode, tmp_path: Path, make_token: Callable[..., str]
) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    repo, other = "admin/leaky", "admin/sharing"
    api.create_repo(repo)
    api.create_repo(other)
    secret, shared, fixed = os.urandom(5000), os.urandom(6000), os.urandom(7000)
    leaked = api.create_commit(
        repo, [add("model.bin", secret), add("shared.bin", shared)], commit_message="leak"
    ).oid
    api.create_commit(repo, [add("model.bin", fixed)], commit_message="fix")
    api.create_commit(other, [add("copy.bin", shared)], commit_message="same bytes")

    files = {f.file_oid: f for f in api.list_lfs_files(repo)}
    by_size = {f.size: f for f in files.values()}
    assert sorted(by_size) == [5000, 6000, 7000]
    assert by_size[5000].filename == "model.bin" and by_size[6000].filename == "shared.bin"
    assert all(f.oid == f.file_oid and len(f.file_oid) == 64 for f in files.values())
    assert by_size[5000].pushed_at.year >= 2024

    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    for refused_call in (
        lambda: list(bob.list_lfs_files(repo)),
        lambda: bob.permanently_delete_lfs_files(repo, [by_size[5000]]),
    ):
        with pytest.raises(HfHubHTTPError) as refused:
            refused_call()
        assert refused.value.response.status_code == 403
    assert len(list(api.list_lfs_files(repo))) == 3  # nothing changed

    api.permanently_delete_lfs_files(repo, [by_size[5000], by_size[6000]])

    assert sorted(f.size for f in api.list_lfs_files(repo)) == [7000]
    with pytest.raises(EntryNotFoundError) as deleted:
        download(node, repo, "model.bin", leaked, tmp_path / "c1")
    assert "permanently deleted" in str(deleted.value)
    with node.client(node.admin_token) as http:
        answer = http.get(f"/{repo}/resolve/{leaked}/model.bin")
    assert answer.status_code == 404 and answer.headers["x-error-code"] == "EntryNotFound"
    assert "permanently deleted" in answer.json()["error"]
    assert download(node, repo, "model.bin", "main", tmp_path / "c2") == fixed
    assert "shared.bin" not in api.list_repo_files(repo)

    # gc frees the deleted file's bytes; the shared one stays for the repo that names it.
    freed_now = collect(node, tmp_path)
    assert b3(secret) in freed_now and b3(shared) not in freed_now
    assert b3(fixed) not in freed_now
    assert download(node, other, "copy.bin", "main", tmp_path / "c3") == shared

    with node.client(node.admin_token) as http:
        bad = http.post(
            f"/api/models/{repo}/lfs-files/batch", json={"deletions": {"sha": ["nothex"]}}
        )
    assert bad.status_code == 400 and bad.headers["x-error-code"] == "BadRequest"


def test_mirrors_take_a_squash_as_a_ref_move_to_a_commit_without_parent(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    hub = start_node("hub")
    node = start_node("home", mirror={"enabled": False})  # pushes wait in the outbox
    with node.client(node.admin_token) as http:
        for body in (
            {"name": "bucket", "kind": "s3", "url": f"s3://{s3_bucket}/models"},
            {"name": "hub", "kind": "hf", "url": hub.url, "token": hub.admin_token},
        ):
            assert http.post("/v1/mirrors", json=body).status_code == 201
    api = HfApi(endpoint=node.url, token=node.admin_token)
    repo = "admin/mirrored"
    api.create_repo(repo)
    old, new = os.urandom(4000), os.urandom(5000)
    api.create_commit(repo, [add("w.bin", old), add("old.bin", old)], commit_message="one")
    api.create_commit(
        repo, [add("w.bin", new), CommitOperationDelete("old.bin")], commit_message="two"
    )
    # Squashed while every earlier change still waits: the pushes of refs to commits the
    # squash left behind are skipped (their trees are gone), the rest goes as it came.
    api.super_squash_history(repo, commit_message="Squashed")
    squashed = api.model_info(repo).sha
    runtime = node.runtime
    pusher = Pusher(runtime.mirrors, runtime.reads, runtime.blobs, recipes=XetRecipes(runtime.db))
    try:
        while pusher.run_once():
            pass
    finally:
        pusher.close()
    with node.client(node.admin_token) as http:
        mirrors = http.get("/v1/mirrors").json()
    assert all(m["backlog"] == 0 and m["rollbacks"] == 0 for m in mirrors), mirrors

    bucket = S3Bucket(f"s3://{s3_bucket}/models")
    manifest = bucket.resolve("model", repo, "main")
    assert manifest.commit == squashed
    assert {f.path for f in manifest.files} == {".gitattributes", "w.bin"}
    assert b"".join(bucket.open({f.path: f for f in manifest.files}["w.bin"])) == new
    theirs = HfApi(endpoint=hub.url)
    assert sorted(theirs.list_repo_files(repo)) == [".gitattributes", "w.bin"]
    copy = hf_hub_download(repo, "w.bin", endpoint=hub.url, cache_dir=tmp_path / "hub")
    assert Path(copy).read_bytes() == new
    for commit in theirs.list_repo_commits(repo):  # no step of the mirror's history is empty
        assert ".gitattributes" in theirs.list_repo_files(repo, revision=commit.commit_id)


def test_a_replica_follows_a_squashed_branch(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    home = start_node("home")
    replica = start_node("replica", sync={"long_poll": 1, "probe_interval": 0.2})
    api = HfApi(endpoint=home.url, token=home.admin_token)
    repo = "admin/replicated"
    api.create_repo(repo)
    weights = os.urandom(4000)
    api.create_commit(repo, [add("w.bin", os.urandom(3000))], commit_message="one")
    api.create_commit(repo, [add("w.bin", weights)], commit_message="two")
    with replica.client(replica.admin_token) as http:
        peer = {"url": home.url, "token": home.admin_token}
        assert http.post("/v1/peers", json=peer).status_code == 201
    theirs = HfApi(endpoint=replica.url, token=replica.admin_token)
    wait_for(lambda: theirs.repo_exists(repo) and len(theirs.list_repo_commits(repo)) == 3)

    api.super_squash_history(repo)
    squashed = api.model_info(repo).sha
    wait_for(lambda: theirs.model_info(repo).sha == squashed)

    commits = theirs.list_repo_commits(repo)
    assert [c.commit_id for c in commits] == [squashed]
    assert commits[0].title == "Super-squash branch 'main' using huggingface_hub"
    local = hf_hub_download(repo, "w.bin", endpoint=replica.url, cache_dir=tmp_path / "replica")
    assert Path(local).read_bytes() == weights


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)
