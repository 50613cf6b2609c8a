"""The node's database going away under traffic, with a real PostgreSQL server of the test's
own, stopped and started mid-traffic: answers are 503 DatabaseUnavailable with Retry-After,
never 500s; health tells alive from ready; nothing acknowledged is lost; and the node is back
by itself when the server is, with no restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, wait_until
from tests.e2e.nodeproc import NodeProcess
from tests.pgserver import PgServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = "admin/steady"


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


def test_a_database_restart_mid_traffic_loses_nothing_acknowledged(
    pg: PgServer, tmp_path: object
) -> None:
    node = NodeProcess(
        tmp_path / "node",  # type: ignore[operator]
        TOKEN,
        env={"MODELYARD_DATABASE_URL": pg.url, "HF_HUB_DISABLE_XET": "1"},
    )
    node.start()
    try:
        api = HfApi(endpoint=node.url, token=TOKEN)
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
        assert set(failures) <= {503}, failures  # never a 500
        history = {c.commit_id for c in api.list_repo_commits(REPO)}
        assert set(acknowledged) <= history  # nothing acknowledged is lost
        log = node.log.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "database unavailable" in log
    finally:
        node.kill()
