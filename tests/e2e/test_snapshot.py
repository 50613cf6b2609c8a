"""A new replica joins from a peer's snapshot (real node processes), then follows its feed."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.conftest import postgres_database_for
from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.faultproxy import Fault, FaultProxy
from tests.tools import require_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]
CARD = b"---\nlicense: mit\nbase_model: admin/base\ntags: [lora]\n---\n# A LoRA\n"


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def populate(node: NodeProcess) -> None:
    """Repos, branches, tags, a card with metadata, a private repo, a deleted one, and refs
    moved more than once (superseded moves the snapshot leaves out)."""
    hub = api(node)
    for name in ("base", "lora", "secret", "gone"):
        hub.create_repo(f"admin/{name}", private=name == "secret")
        hub.upload_file(path_or_fileobj=b"v1", path_in_repo="w.bin", repo_id=f"admin/{name}")
    hub.upload_file(path_or_fileobj=CARD, path_in_repo="README.md", repo_id="admin/lora")
    hub.upload_file(path_or_fileobj=b"v2", path_in_repo="w.bin", repo_id="admin/lora")
    hub.create_branch("admin/lora", branch="dev")
    hub.create_tag("admin/lora", tag="v1")
    hub.create_tag("admin/base", tag="v1")
    hub.delete_tag("admin/base", tag="v1")
    hub.delete_repo("admin/gone")


def add_peer(node: NodeProcess, url: str, bootstrap: str = "snapshot") -> None:
    """`modelyard peer add` on the node's data dir (the node is stopped or running)."""
    subprocess.run(
        [sys.executable, "-m", "registry", "peer", "add", url, "--token", TOKEN]
        + ["--bootstrap", bootstrap, "--data-dir", str(node.data_dir)],
        check=True,
        capture_output=True,
        env=node._env,  # the node's own settings
    )


def digest(node: NodeProcess) -> tuple[str, int]:
    with node.client() as http:
        body = http.get("/v1/sync/state-digest").json()
    return body["digest"], body["repos"]


def head_serial(node: NodeProcess) -> int:
    with node.client() as http:
        return int(http.get("/v1/health").json()["serial"])


def log_identities(node: NodeProcess) -> list[tuple[str, int]]:
    with node.client() as http:
        page = http.get("/v1/sync/changes", params={"since": 0, "limit": 5000}).json()
    return [(e["origin"], e["origin_serial"]) for e in page["entries"]]


def caught_up(replica: NodeProcess, home: NodeProcess) -> bool:
    return digest(replica) == digest(home)


def joined_from_snapshot(node: NodeProcess) -> bool:
    return "peer joined from snapshot" in node._log.read_text()


def joined(spawn: Spawn) -> tuple[NodeProcess, NodeProcess]:
    """A populated home A, and B joined to it (by snapshot) and caught up."""
    a = spawn("a")
    populate(a)
    b = spawn("b")
    add_peer(b, a.url)
    wait_until(lambda: caught_up(b, a))
    return a, b


def test_snapshot_bootstrap_matches_the_home_then_follows_its_feed(spawn: Spawn) -> None:
    a, b = joined(spawn)
    assert joined_from_snapshot(b)
    assert digest(b)[1] == 3  # base, lora, secret: the deleted repo stayed deleted
    assert [t.name for t in api(b).list_repo_refs("admin/lora").tags] == ["v1"]
    # The card is read from README.md's bytes, which follow the metadata.
    wait_until(lambda: api(b).model_info("admin/lora").card_data is not None)
    card = api(b).model_info("admin/lora").card_data
    assert card is not None and card["base_model"] == "admin/base"
    with b.client() as http:  # bytes follow the snapshot, verified, as after any pull
        assert http.get("/admin/lora/resolve/v1/w.bin").content == b"v2"
    # Superseded ref moves were left out: B logged fewer entries than A holds.
    assert len(log_identities(b)) < head_serial(a)
    sha = api(a).upload_file(path_or_fileobj=b"v3", path_in_repo="w.bin", repo_id="admin/lora").oid
    wait_until(lambda: api(b).model_info("admin/lora").sha == sha)
    wait_until(lambda: caught_up(b, a))
    identities = log_identities(b)
    assert len(identities) == len(set(identities))


def test_snapshot_keeps_private_repos_from_a_reader_who_may_not_see_them(spawn: Spawn) -> None:
    a = spawn("a")
    populate(a)
    with a.client(token=None) as http:
        body = http.get("/v1/sync/snapshot").content
    assert b"admin/lora" in body and b"admin/secret" not in body
    with a.client() as http:
        assert b"admin/secret" in http.get("/v1/sync/snapshot").content


def test_chain_c_boots_from_b_snapshot_while_b_follows_a(spawn: Spawn) -> None:
    a, b = joined(spawn)
    api(a).upload_file(path_or_fileobj=b"more", path_in_repo="x.bin", repo_id="admin/base")
    c = spawn("c")
    add_peer(c, b.url)  # C never talks to A
    wait_until(lambda: caught_up(c, a))
    assert joined_from_snapshot(c)
    sha = api(a).upload_file(path_or_fileobj=b"new", path_in_repo="n.bin", repo_id="admin/lora").oid
    wait_until(lambda: api(c).model_info("admin/lora").sha == sha)
    wait_until(lambda: caught_up(c, a))
    with c.client() as http:
        # The bytes follow the metadata down the chain (A to B to C, in the background):
        # until they reach B, C answers 503 BlobUnavailable with Retry-After.
        def served() -> bool:
            answer = http.get("/admin/lora/resolve/main/n.bin")
            if answer.status_code == 503:
                assert answer.json()["code"] == "BlobUnavailable", answer.text
                assert "Retry-After" in answer.headers
                return False
            assert answer.status_code == 200 and answer.content == b"new", answer.text
            return True

        wait_until(served, 30, 0.2)


@contextmanager
def joining_through_a_proxy(
    spawn: Spawn, fault: Fault
) -> Iterator[tuple[NodeProcess, NodeProcess, FaultProxy]]:
    """A populated home A, and a stopped new node B set to join it by snapshot through a
    proxy that injects `fault`; yields (A, B, the proxy), B not started yet."""
    a = spawn("a")
    populate(a)
    proxy = FaultProxy(a.port)
    try:
        b = spawn("b")
        b.stop()
        add_peer(b, proxy.url)
        proxy.inject(fault)
        yield a, b, proxy
    finally:
        proxy.close()


def test_kill_mid_snapshot_restarts_cleanly_and_converges(spawn: Spawn) -> None:
    # Every answer holds after 3000 bytes: only the snapshot is that long.
    with joining_through_a_proxy(spawn, Fault(pause_after=3000, pause=30, times=1000)) as (
        a,
        b,
        proxy,
    ):
        b.start()
        assert proxy.paused.wait(30)
        assert digest(b)[1] == 0  # mid-snapshot: nothing of it is visible
        b.kill()
        proxy.inject(Fault(times=0))
        b.start()
        wait_until(lambda: caught_up(b, a))
        assert joined_from_snapshot(b)
        identities = log_identities(b)
        assert len(identities) == len(set(identities)), Counter(identities).most_common(3)


def test_tampered_snapshot_is_refused_and_nothing_becomes_visible(spawn: Spawn) -> None:
    # A byte inside the entries is changed.
    with joining_through_a_proxy(spawn, Fault(corrupt_at=3000, times=1000)) as (a, b, proxy):
        b.start()
        wait_until(lambda: "SnapshotMismatch" in (b.peers()[0].get("last_error") or ""))
        assert digest(b)[1] == 0
        assert b.peers()[0]["cursor"] == 0
        proxy.inject(Fault(times=0))  # an honest answer next time: B joins
        wait_until(lambda: caught_up(b, a), timeout=60)


def test_auto_takes_a_snapshot_only_of_a_peer_past_the_threshold(spawn: Spawn) -> None:
    a = spawn("a")
    populate(a)
    b = spawn("b", env={"MODELYARD_SYNC__SNAPSHOT_THRESHOLD": "5"})
    c = spawn("c")  # the default threshold: far above A's few entries
    add_peer(b, a.url, "auto")
    add_peer(c, a.url, "auto")
    wait_until(lambda: caught_up(b, a) and caught_up(c, a))
    assert joined_from_snapshot(b)
    assert not joined_from_snapshot(c) and "peer joins by replay" in c._log.read_text()


@pytest.mark.postgres
def test_snapshot_bootstrap_on_postgres(spawn: Spawn, tmp_path: Path) -> None:
    require_postgres()
    a, b = (
        spawn(name, env={"MODELYARD_DATABASE_URL": postgres_database_for(tmp_path / name)})
        for name in ("a", "b")
    )
    populate(a)
    add_peer(b, a.url)
    wait_until(lambda: caught_up(b, a))
    assert joined_from_snapshot(b)
    sha = api(a).upload_file(path_or_fileobj=b"pg", path_in_repo="p.bin", repo_id="admin/lora").oid
    wait_until(lambda: api(b).model_info("admin/lora").sha == sha)
