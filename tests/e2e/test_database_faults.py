"""The node's database going away under traffic, with a real PostgreSQL server of the test's
own, stopped and started mid-traffic: answers are 503 DatabaseUnavailable with Retry-After,
never 500s; health tells alive from ready; nothing acknowledged is lost; and the node is back
by itself when the server is, with no restart."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, wait_until
from tests.e2e.cluster import NodeProcess as PeerProcess
from tests.e2e.nodeproc import NodeProcess
from tests.pgserver import PgServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = "admin/steady"
UPSTREAM = "admin/upstream"  # a peer's repo, which this node's puller replicates
FAST_SYNC = {"MODELYARD_SYNC__LONG_POLL": "2", "MODELYARD_SYNC__PROBE_INTERVAL": "0.5"}


@pytest.fixture
def pg() -> Iterator[PgServer]:
    server = PgServer()
    yield server
    server.close()


def commit(api: HfApi, i: int) -> str:
    return str(
        api.upload_file(
            path_or_fileobj=f"{i}\n".encode(), path_in_repo=f"f/{i}.txt", repo_id=REPO
        ).oid
    )


def gauge(node: NodeProcess, name: str) -> float:
    scrape = httpx.get(f"{node.url}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", scrape, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_a_database_restart_mid_traffic_loses_nothing_acknowledged(
    pg: PgServer, tmp_path: Path
) -> None:
    home = PeerProcess(tmp_path, "home").start()  # a peer on its own (SQLite) database
    env = {"MODELYARD_DATABASE_URL": pg.url, "HF_HUB_DISABLE_XET": "1", **FAST_SYNC}
    node = NodeProcess(tmp_path / "node", TOKEN, env=env)
    node.start()
    try:
        api = HfApi(endpoint=node.url, token=TOKEN)
        upstream = HfApi(endpoint=home.url, token=TOKEN)
        upstream.create_repo(UPSTREAM)
        upstream.upload_file(path_or_fileobj=b"0", path_in_repo="u.txt", repo_id=UPSTREAM)
        home.add_peer(node.url)  # so that the home knows the replica (not needed to pull)
        with httpx.Client(base_url=node.url, timeout=30) as http:
            auth = {"authorization": f"Bearer {TOKEN}"}
            peer = {"url": home.url, "token": TOKEN}
            assert http.post("/v1/peers", json=peer, headers=auth).status_code == 201
        wait_until(lambda: api.model_info(UPSTREAM).sha == upstream.model_info(UPSTREAM).sha)
        api.create_repo(REPO)
        acknowledged: list[str] = []
        failures: list[int] = []
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set() and i < 10_000:
                i += 1
                try:
                    acknowledged.append(commit(api, i))
                except (HfHubHTTPError, httpx.HTTPError) as exc:
                    response = getattr(exc, "response", None)
                    failures.append(response.status_code if response is not None else 0)

        thread = threading.Thread(target=writer)
        thread.start()
        wait_until(lambda: len(acknowledged) >= 5)
        pg.stop()
        try:
            wait_until(lambda: len(failures) >= 1)
            # The peer goes on meanwhile: this node's puller must wait, then catch up.
            upstream.upload_file(path_or_fileobj=b"during", path_in_repo="u.txt", repo_id=UPSTREAM)
            with httpx.Client(base_url=node.url, timeout=30) as http:
                health = http.get("/v1/health")
                assert health.status_code == 503, health.text
                assert health.headers["x-error-code"] == "DatabaseUnavailable"
                assert health.headers["retry-after"]
                assert http.get("/v1/health/live").status_code == 200
                ready = http.get("/v1/health/ready")
                assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
                scrape = http.get("/metrics")
                assert scrape.status_code == 200 and "modelyard_database_up 0.0" in scrape.text
                info = http.get(f"/api/models/{REPO}")
                assert info.status_code == 503 and info.json()["code"] == "DatabaseUnavailable"
        finally:
            pg.start()
        wait_until(lambda: httpx.get(f"{node.url}/v1/health/ready").status_code == 200, 30)
        done_before = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= done_before + 5, 30)  # writes resume by themselves
        stop.set()
        thread.join(timeout=60)
        # Background jobs resume by themselves: the puller catches up with the peer, and the
        # indexer with every write made before, during and after the outage.
        wanted = upstream.model_info(UPSTREAM).sha
        wait_until(lambda: api.model_info(UPSTREAM).sha == wanted, 30)
        wait_until(lambda: gauge(node, "modelyard_index_lag_entries") == 0, 30)
        assert gauge(node, "modelyard_database_up") == 1
        assert set(failures) <= {503}, failures  # never a 500
        history = {c.commit_id for c in api.list_repo_commits(REPO)}
        assert set(acknowledged) <= history  # nothing acknowledged is lost
        log = node.log.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "code=DatabaseUnavailable" in log
    finally:
        node.kill()
        home.kill()
