"""A home restored from a backup, with real node processes: its peers tell that its history
went back, follow the new one, and keep what only the old one had.

A "backup" is a copy of the data dir taken while the node is stopped; a restore puts it back.
`restore_as_a_copy` replaces the files (what `cp -a` or a backup tool does: new inodes, so the
node's history marker tells it at start and it takes a new epoch); `restore_in_place` writes the
old bytes into the same files, which the marker cannot tell, so peers find it from the chains.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.ports import free_port
from tests.promrules import assert_fires

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]
REPO = "admin/restored"
CONVERGE_SECONDS = 5  # the bound, from the home's first new commit


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def head_of(node: NodeProcess, repo: str = REPO) -> str | None:
    try:
        return api(node).model_info(repo).sha
    except HfHubHTTPError:
        return None


def commit(node: NodeProcess, name: str, data: bytes) -> str:
    return str(api(node).upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=REPO).oid)


def files_of(node: NodeProcess) -> set[str]:
    return {f.rfilename for f in api(node).model_info(REPO).siblings or []}


def peer_of(node: NodeProcess) -> dict[str, Any]:
    (peer,) = node.peers()
    return peer


def feed_identities(node: NodeProcess) -> list[tuple[str, int]]:
    with node.client() as http:
        page = http.get("/v1/sync/changes", params={"since": 0, "limit": 5000}).json()
    return [(e["origin"], e["origin_serial"]) for e in page["entries"]]


def history_of(node: NodeProcess, origin: NodeProcess) -> list[tuple[int, str | None]]:
    """The entries of `origin`'s history a node serves (set-aside ones are not), each with its
    chain, in the node's log order: the same list on two nodes is the same history, each entry
    once."""
    with node.client() as http:
        page = http.get("/v1/sync/changes", params={"since": 0, "limit": 5000}).json()
    assert page["last_serial"] >= page["head"]  # one page holds the whole log
    return [
        (e["origin_serial"], e["chain"]) for e in page["entries"] if e["origin"] == origin.node_id
    ]


def commits_of(node: NodeProcess) -> list[str]:
    return [c.commit_id for c in api(node).list_repo_commits(REPO)]


def assert_same_history(home: NodeProcess, *replicas: NodeProcess) -> None:
    """Each replica holds the home's current history and nothing of it twice: the same
    entries with the same chains in the same order, and the same commits of the repo."""
    expected, commits = history_of(home, home), commits_of(home)
    for node in replicas:
        assert history_of(node, home) == expected, node.name
        assert commits_of(node) == commits, node.name
        identities = feed_identities(node)
        assert len(identities) == len(set(identities)), node.name


def has_blob(node: NodeProcess, data: bytes) -> bool:
    with node.client() as http:
        return http.head(f"/v1/blobs/{blake3.blake3(data).hexdigest()}").status_code == 200


def epoch_of(node: NodeProcess) -> str:
    with node.client() as http:
        return str(http.get("/v1/health").json()["epoch"])


def backup(node: NodeProcess, to: Path) -> None:
    node.stop()
    shutil.copytree(node.data_dir, to)


def restore_as_a_copy(node: NodeProcess, copy: Path) -> None:
    node.stop()
    shutil.rmtree(node.data_dir)
    shutil.copytree(copy, node.data_dir)


def restore_in_place(node: NodeProcess, copy: Path) -> None:
    """Every file of the copy written back into the file of the same path (same inode);
    files the copy lacks removed."""
    node.stop()
    for path in sorted(node.data_dir.rglob("*"), reverse=True):
        old = copy / path.relative_to(node.data_dir)
        if path.is_file() and not old.exists():
            path.unlink()
    for old in copy.rglob("*"):
        path = node.data_dir / old.relative_to(copy)
        if old.is_dir():
            path.mkdir(exist_ok=True)
        else:
            with path.open("r+b" if path.exists() else "wb") as out:
                out.truncate(0)
                out.write(old.read_bytes())


def serial_of(node: NodeProcess) -> int:
    with node.client() as http:
        return int(http.get("/v1/health").json()["serial"])


def lose_five_uploads(a: NodeProcess, b: NodeProcess, copy: Path) -> tuple[list[bytes], int]:
    """Commits on A up to a backup, five more uploads B replicates: their bytes, and how
    many entries A wrote for them."""
    api(a).create_repo(REPO)
    for i in range(6):
        commit(a, f"kept/{i}.txt", f"kept {i}".encode())
    wait_until(lambda: head_of(b) == head_of(a))
    backup(a, copy)
    a.start()
    before = serial_of(a)
    lost = [os.urandom(200_000 + i) for i in range(5)]
    for i, data in enumerate(lost):
        commit(a, f"lost/{i}.bin", data)
    wait_until(lambda: head_of(b) == head_of(a))
    wait_until(lambda: all(has_blob(b, data) for data in lost))
    return lost, serial_of(a) - before


def test_restored_home_is_followed_and_what_it_lost_is_kept(spawn: Spawn, tmp_path: Path) -> None:
    port = free_port()  # B tells A its URL, so A's status says where to recover from
    a = spawn("a")
    b = spawn("b", port=port, env={"MODELYARD_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    b.add_peer(a)
    lost, entries = lose_five_uploads(a, b, tmp_path / "backup")
    old_epoch = epoch_of(a)
    restore_as_a_copy(a, tmp_path / "backup")
    a.start()
    assert epoch_of(a) != old_epoch  # the marker told the restore: a new history
    # B sees A's history went back (its cursor is past A's head) before A writes anything.
    wait_until(lambda: peer_of(b)["set_aside_entries"] == entries, 30)
    wait_until(lambda: peer_of(b)["state"] == "diverged")  # once up again after A's restart
    assert peer_of(b)["diverged_at"]
    assert head_of(b) == head_of(a)  # B's main is back where A's is
    # A's admin sees that it was restored, and who keeps what it lost.
    wait_until(lambda: status_of(a)["lost_history"])
    status = status_of(a)
    assert status["restored_ms"]
    assert [(h["node"], h["url"], h["entries"]) for h in status["lost_history"]] == [
        ("b", b.url, entries)
    ]
    with a.client() as http:
        assert f"modelyard recover --from {b.url}" in http.get("/status").text
    committing = time.monotonic()  # B has 5 s from A's first new commit, its upload included
    first = commit(a, "new/0.txt", b"after the restore")
    wait_until(lambda: head_of(b) == first, CONVERGE_SECONDS)
    assert time.monotonic() - committing < CONVERGE_SECONDS
    for i in (1, 2):
        commit(a, f"new/{i}.txt", b"more")
    wait_until(lambda: head_of(b) == head_of(a))
    assert files_of(b) == files_of(a)
    assert not any(f.startswith("lost/") for f in files_of(b))
    assert all(has_blob(b, data) for data in lost)  # kept on B, for recovery
    assert_gc_keeps(b, lost)
    peer = peer_of(b)
    assert peer["state"] == "diverged" and peer["set_aside_entries"] == entries
    assert peer["lag_serials"] == 0 and peer["last_error"] is None
    with b.client() as http:  # B's status page too
        peers_table = http.get("/status").text.split('<table id="peers">', 1)[1]
    assert '<b class="diverged">diverged</b>' in peers_table.split("</table>", 1)[0]
    assert_same_history(a, b)
    # The metrics say so too, and the alert rule fires on them.
    assert_diverged_alert(b, {str(peer["id"]): str(entries)}, tmp_path)

    # The home's admin brings the five uploads back from B, with A running.
    dry = recover(a, b, "--dry-run")
    assert f"model/{REPO}: 5 commits, 5 files to fetch" in dry.stdout, dry.stdout
    assert "recovered/main" not in refs_of(a)
    done = recover(a, b)
    assert "recovered 5 commits, fetched 5 files" in done.stdout, done.stdout
    assert "recovered/main" in refs_of(a)
    assert_recovered(a, lost, tmp_path)
    assert head_of(a) == head_of(b)  # main as A's new history made it
    again = recover(a, b)  # nothing twice
    assert "recovered 0 commits, fetched 0 files" in again.stdout, again.stdout
    # B learns the recovered commits from A's feed: nothing is held for A any more.
    wait_until(lambda: peer_of(b)["set_aside_entries"] == 0, 30)
    wait_until(lambda: peer_of(b)["state"] == "up")
    assert "recovered/main" in refs_of(b)
    wait_until(lambda: not status_of(a)["lost_history"])
    assert_diverged_alert(b, {}, tmp_path)  # and the alert resolves


def assert_diverged_alert(node: NodeProcess, firing: dict[str, str], tmp_path: Path) -> None:
    """The node's peer metrics show what its /v1/peers does, and ModelyardPeerHistoryDiverged
    fires on its scrape for the peers of `firing` (peer -> entries set aside) only."""
    with node.client() as http:
        scrape = http.get("/metrics").text
    for peer, kept in firing.items():
        assert f'modelyard_peer_state{{peer="{peer}",state="diverged"}} 1.0' in scrape
        assert f'modelyard_peer_set_aside_entries{{peer="{peer}"}} {kept}.0' in scrape
    names = ("modelyard_peer_state", "modelyard_peer_set_aside_entries")
    assert_fires(scrape, "ModelyardPeerHistoryDiverged", names, firing, tmp_path)


def assert_gc_keeps(node: NodeProcess, kept: list[bytes]) -> None:
    """`modelyard gc --delete --grace 0` beside the running node frees a blob nothing names (an
    upload never committed) and keeps the blobs only set-aside entries name."""
    garbage = os.urandom(1000)
    with node.client() as http:
        put = http.put(f"/v1/blobs/{blake3.blake3(garbage).hexdigest()}", content=garbage)
    assert put.status_code == 201, put.text
    done = subprocess.run(
        [sys.executable, "-m", "registry", "gc", "--delete", "--grace", "0"]
        + ["--data-dir", str(node.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not has_blob(node, garbage), done.stdout
    assert all(has_blob(node, data) for data in kept), done.stdout


def status_of(node: NodeProcess) -> dict[str, Any]:
    with node.client() as http:
        return dict(http.get("/v1/status").json())


def assert_recovered(home: NodeProcess, lost: list[bytes], tmp_path: Path) -> None:
    """Each lost file reads back byte for byte on `recovered/main` through the stock client,
    and the home's by-hash lookup finds it there."""
    for i, data in enumerate(lost):
        path = hf_hub_download(
            REPO,
            f"lost/{i}.bin",
            revision="recovered/main",
            endpoint=home.url,
            token=TOKEN,
            cache_dir=tmp_path / "download",
        )
        assert Path(path).read_bytes() == data
        with home.client() as http:
            hits = http.get(f"/v1/files/by-hash/{blake3.blake3(data).hexdigest()}").json()
        assert {(h["repo"], h["path"]) for h in hits} == {(REPO, f"lost/{i}.bin")}


def refs_of(node: NodeProcess) -> list[str]:
    return [r.name for r in api(node).list_repo_refs(REPO).branches]


def recover(
    home: NodeProcess, source: NodeProcess | str, *flags: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "recover",
            "--from",
            source if isinstance(source, str) else source.url,
            "--token-env",
            "SOURCE_TOKEN",
            "--data-dir",
            str(home.data_dir),
            *flags,
        ],
        env={**os.environ, "SOURCE_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_restore_found_from_the_chain_once_the_home_went_past_the_cursor(
    spawn: Spawn, tmp_path: Path
) -> None:
    a, b = spawn("a"), spawn("b")
    b.add_peer(a)
    lost, entries = lose_five_uploads(a, b, tmp_path / "backup")
    old_epoch = epoch_of(a)
    cursor = peer_of(b)["cursor"]
    b.stop()  # B does not see A until A's new history is longer than what B read
    restore_in_place(a, tmp_path / "backup")
    a.start()
    assert epoch_of(a) == old_epoch  # the same files: nothing told A it was restored
    assert serial_of(a) < cursor
    for i in range(20):
        commit(a, f"new/{i}.txt", f"new {i}".encode())
    assert serial_of(a) > cursor  # no cursor ahead of the head: only the chains tell
    b.start()
    wait_until(lambda: head_of(b) == head_of(a), 30)
    assert files_of(b) == files_of(a)
    assert not any(f.startswith("lost/") for f in files_of(b))
    peer = peer_of(b)
    assert peer["state"] == "diverged" and peer["set_aside_entries"] == entries
    assert peer["diverged_at"] and peer["epoch"] == old_epoch
    assert_same_history(a, b)
    # And the five uploads come back to A from B, byte for byte.
    done = recover(a, b)
    assert "recovered 5 commits, fetched 5 files" in done.stdout, done.stdout
    assert_recovered(a, lost, tmp_path)


def test_restore_in_place_behind_the_cursor_is_found_by_the_running_peer(
    spawn: Spawn, tmp_path: Path
) -> None:
    """The issue's first failure: a restore the marker cannot tell (same files, same epoch), A's
    head behind B's cursor, B running all along. B's pulls are answered `CursorAhead`: B must
    say `diverged` (never `up` with an error behind it) and follow A's new commits."""
    a, b = spawn("a"), spawn("b")
    b.add_peer(a)
    lost, entries = lose_five_uploads(a, b, tmp_path / "backup")
    old_epoch, cursor = epoch_of(a), peer_of(b)["cursor"]
    restore_in_place(a, tmp_path / "backup")
    a.start()
    assert epoch_of(a) == old_epoch and serial_of(a) < cursor
    wait_until(lambda: peer_of(b)["set_aside_entries"] == entries, 30)
    wait_until(lambda: peer_of(b)["state"] == "diverged")
    assert head_of(b) == head_of(a) and peer_of(b)["last_error"] is None
    committing = time.monotonic()
    first = commit(a, "new/0.txt", b"after the restore")
    wait_until(lambda: head_of(b) == first, CONVERGE_SECONDS)
    assert time.monotonic() - committing < CONVERGE_SECONDS
    assert_same_history(a, b)
    assert all(has_blob(b, data) for data in lost)


def test_a_chain_of_peers_follows_a_restored_home(spawn: Spawn, tmp_path: Path) -> None:
    a, b, c = spawn("a"), spawn("b"), spawn("c")
    b.add_peer(a)
    c.add_peer(b)  # C never talks to A
    _, entries = lose_five_uploads(a, b, tmp_path / "backup")
    wait_until(lambda: head_of(c) == head_of(a))
    restore_as_a_copy(a, tmp_path / "backup")
    a.start()
    for i in range(3):
        commit(a, f"new/{i}.txt", f"new {i}".encode())
    wait_until(lambda: head_of(c) == head_of(a), 30)
    assert files_of(c) == files_of(a)
    assert_same_history(a, b, c)  # C converged and applied nothing twice
    assert peer_of(b)["set_aside_entries"] == entries


def test_a_restored_replica_resyncs_and_its_peers_see_a_new_epoch(
    spawn: Spawn, tmp_path: Path
) -> None:
    a, b, c = spawn("a"), spawn("b"), spawn("c")
    b.add_peer(a)
    c.add_peer(b)
    api(a).create_repo(REPO)
    for i in range(4):
        commit(a, f"early/{i}.txt", f"early {i}".encode())
    wait_until(lambda: head_of(c) == head_of(a))
    backup(b, tmp_path / "backup-b")
    b.start()
    for i in range(6):
        commit(a, f"late/{i}.txt", f"late {i}".encode())
    wait_until(lambda: head_of(c) == head_of(a))
    old_epoch = epoch_of(b)
    assert peer_of(c)["epoch"] == old_epoch  # what C heard of B before the restore
    restore_as_a_copy(b, tmp_path / "backup-b")
    b.start()
    new_epoch = epoch_of(b)
    assert new_epoch != old_epoch
    wait_until(lambda: peer_of(c)["epoch"] == new_epoch)  # B's own peer sees its new history
    wait_until(lambda: head_of(b) == head_of(a), 60)
    commit(a, "after.txt", b"after B's restore")
    wait_until(lambda: head_of(c) == head_of(a), 60)
    assert files_of(c) == files_of(a)
    for node in (b, c):
        identities = feed_identities(node)
        assert len(identities) == len(set(identities)), node.name
    assert peer_of(c)["set_aside_entries"] == 0  # B lost nothing of its own


def test_replica_killed_during_the_resync_resumes(spawn: Spawn, tmp_path: Path) -> None:
    """B reads A's new history in pages of 5 entries; A is frozen (SIGSTOP) while B is still
    resyncing, so the SIGKILL surely lands with part of the new history read and part not."""
    small_pages = {"MODELYARD_SYNC__BATCH": "5", "MODELYARD_SYNC__CATCHUP_BATCH": "5"}
    a, b = spawn("a"), spawn("b", env=small_pages)
    b.add_peer(a)
    lost, entries = lose_five_uploads(a, b, tmp_path / "backup")
    b.stop()
    restore_as_a_copy(a, tmp_path / "backup")
    a.start()
    for i in range(60):
        commit(a, f"new/{i}.txt", f"new {i}".encode())
    b.start()
    wait_until(lambda: peer_of(b)["state"] == "resyncing", 30, 0.005)
    assert a.pid is not None
    os.kill(a.pid, signal.SIGSTOP)
    try:
        peer = peer_of(b)  # B can read no further now
        assert peer["state"] == "resyncing" and peer["set_aside_entries"] == entries, peer
        assert 0 < peer["cursor"] < peer["head"], peer
        b.kill()  # SIGKILL in the middle of the resync
    finally:
        os.kill(a.pid, signal.SIGCONT)
    b.start()
    wait_until(lambda: head_of(b) == head_of(a), 60)
    assert files_of(b) == files_of(a)
    peer = peer_of(b)
    assert peer["state"] == "diverged" and peer["set_aside_entries"] == entries, peer
    assert all(has_blob(b, data) for data in lost)  # what A lost is still kept on B
    assert_same_history(a, b)  # nothing lost, nothing applied twice


FAST_MIRROR = {"MODELYARD_MIRROR__INTERVAL": "0.1", "MODELYARD_MIRROR__RETRY_INITIAL": "0.2"}


def mirror_backlog(node: NodeProcess) -> int:
    with node.client() as http:
        return sum(int(m["backlog"]) for m in http.get("/v1/mirrors").json())


def test_recover_from_the_s3_mirror_that_kept_the_lost_uploads(
    spawn: Spawn, tmp_path: Path, s3_bucket: str
) -> None:
    a = spawn("a", env=FAST_MIRROR)
    bucket = f"s3://{s3_bucket}/mirror"
    with a.client() as http:
        added = http.post("/v1/mirrors", json={"name": "s3", "kind": "s3", "url": bucket})
        assert added.status_code == 201, added.text
    api(a).create_repo(REPO)
    commit(a, "kept.txt", b"kept")
    wait_until(lambda: mirror_backlog(a) == 0)
    backup(a, tmp_path / "backup")
    a.start()
    lost = [os.urandom(150_000 + i) for i in range(3)]
    for i, data in enumerate(lost):
        commit(a, f"lost/{i}.bin", data)
    wait_until(lambda: mirror_backlog(a) == 0)  # the bucket holds them
    restore_as_a_copy(a, tmp_path / "backup")
    a.start()
    assert not any(f.startswith("lost/") for f in files_of(a))
    dry = recover(a, bucket, "--dry-run")
    assert "refs/heads/main at" in dry.stdout and "lost here" in dry.stdout, dry.stdout
    assert "recovered/main" not in refs_of(a)
    done = recover(a, bucket)
    assert "branch recovered/main; fetched 3 files" in done.stdout, done.stdout
    assert_recovered(a, lost, tmp_path)
    assert "recovered before" in recover(a, bucket).stdout  # nothing twice


def test_mirrors_keep_the_heads_a_restore_rolls_back(
    spawn: Spawn, tmp_path: Path, s3_bucket: str
) -> None:
    """After a restore, the first push of each mirror kind reads where the ref points there,
    keeps the lost head on `recovered/main` and shows the roll-back; a bucket's kept head is
    then recovered, and pushing that back is no second roll-back."""
    target = spawn("target")  # a node mirror
    hub = spawn("hub")  # the Hub for the `hf` mirror kind
    a = spawn("a", env={**FAST_MIRROR, "HF_HUB_DISABLE_XET": "1"})
    bucket = f"s3://{s3_bucket}/rollback"
    with a.client() as http:
        for body in (
            {"name": "s3", "kind": "s3", "url": bucket},
            {"name": "node", "kind": "node", "url": target.url, "token": TOKEN},
            {"name": "hf", "kind": "hf", "url": hub.url, "token": TOKEN},
        ):
            assert http.post("/v1/mirrors", json=body).status_code == 201
    api(a).create_repo(REPO)
    commit(a, "kept.txt", b"kept")
    wait_until(lambda: mirror_backlog(a) == 0)
    with a.client() as http:
        before = http.get("/metrics").text  # no roll-back yet: each mirror's count is 0
    backup(a, tmp_path / "backup")
    a.start()
    lost = [os.urandom(120_000)]
    lost_head = commit(a, "lost/0.bin", lost[0])
    wait_until(lambda: mirror_backlog(a) == 0)
    restore_as_a_copy(a, tmp_path / "backup")
    a.start()
    new_head = commit(a, "new.txt", b"after the restore")
    wait_until(lambda: mirror_backlog(a) == 0)

    with a.client() as http:
        views = {m["name"]: m for m in http.get("/v1/mirrors").json()}
        scrape = http.get("/metrics").text
        page = http.get("/status").text
    for name, view in views.items():
        assert view["rollbacks"] == 1, (name, view)
        (rollback,) = view["recent_rollbacks"]
        assert rollback["repo"] == REPO and rollback["ref"] == "refs/heads/main"
        assert rollback["lost_commit"] == lost_head and rollback["new_commit"] == new_head
        assert rollback["kept_as"] == "recovered/main"
        assert f'modelyard_mirror_rollbacks{{mirror="{name}"}} 1.0' in scrape
    assert "past lost commit" in page and "kept as recovered/main" in page
    rolled = ("modelyard_mirror_rollbacks",)
    firing = {name: "" for name in views}  # the annotations do not show the value
    assert_fires(scrape, "ModelyardMirrorRolledBack", rolled, firing, tmp_path, "mirror", before)
    assert_fires(scrape, "ModelyardMirrorRolledBack", rolled, {}, tmp_path, "mirror", scrape)
    shown = subprocess.run(
        [sys.executable, "-m", "registry", "mirror", "status", "--data-dir", str(a.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"rolled back model/{REPO} refs/heads/main past lost commit {lost_head}" in shown.stdout
    for remote in (target, hub):
        files = {f.rfilename for f in api(remote).model_info(REPO).siblings or []}
        kept = api(remote).model_info(REPO, revision="recovered/main").siblings or []
        assert "new.txt" in files and "lost/0.bin" not in files
        assert "lost/0.bin" in {f.rfilename for f in kept}
    from mirror.s3_target import S3Bucket

    held = S3Bucket(bucket).refs("model", REPO)
    assert held["refs/heads/main"] == new_head
    assert held["refs/heads/recovered/main"] == lost_head

    done = recover(a, bucket)
    assert "refs/heads/recovered/main at" in done.stdout, done.stdout
    assert "branch recovered/main; fetched 1 files" in done.stdout, done.stdout
    assert_recovered(a, lost, tmp_path)
    wait_until(lambda: mirror_backlog(a) == 0)
    with a.client() as http:
        after = {m["name"]: m["rollbacks"] for m in http.get("/v1/mirrors").json()}
    assert after == {"s3": 1, "node": 1, "hf": 1}
    assert S3Bucket(bucket).refs("model", REPO)["refs/heads/recovered/main"] != lost_head
