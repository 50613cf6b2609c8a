"""The change feed: ordered, gap-free, privacy-filtered, long-polling."""

from __future__ import annotations

import threading
import time

from huggingface_hub import HfApi

from tests.conftest import RunningNode


def test_feed_lists_every_change_in_order_with_origin(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/fed")
    sha = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="admin/fed").oid
    with node.client(node.admin_token) as http:
        response = http.get("/v1/sync/changes", params={"since": 0})
    page = response.json()
    kinds = [e["kind"] for e in page["entries"]]
    assert kinds == ["repo.upsert", "commit.add", "ref.set", "commit.add", "ref.set"]
    serials = [e["serial"] for e in page["entries"]]
    assert serials == list(range(1, len(serials) + 1)) and page["head"] == serials[-1]
    assert all(e["origin"] == page["node_id"] for e in page["entries"])
    assert all(e["origin_serial"] == e["serial"] for e in page["entries"])
    assert page["entries"][3]["body"]["id"] == sha
    assert response.headers["X-Modelyard-Node"] == page["node_id"]
    assert response.headers["X-Modelyard-Serial"] == str(page["head"])
    assert response.headers["X-Modelyard-Epoch"] == page["epoch"]


def test_feed_hides_private_entries_but_advances_the_cursor(node: RunningNode) -> None:
    HfApi(endpoint=node.url, token=node.admin_token).create_repo("admin/secret", private=True)
    with node.client() as anonymous:
        hidden = anonymous.get("/v1/sync/changes", params={"since": 0}).json()
    with node.client(node.admin_token) as admin:
        shown = admin.get("/v1/sync/changes", params={"since": 0}).json()
    assert hidden["entries"] == [] and hidden["last_serial"] == hidden["head"] == 3
    assert [e["repo"] for e in shown["entries"]] == ["model/admin/secret"] * 3


def test_feed_long_poll_returns_as_soon_as_a_change_commits(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    with node.client() as http:
        head = http.get("/v1/sync/changes").json()["head"]
        timer = threading.Timer(0.5, lambda: api.create_repo("admin/late"))
        started = time.monotonic()
        timer.start()
        page = http.get("/v1/sync/changes", params={"since": head, "wait": 20}).json()
        elapsed = time.monotonic() - started
        timer.join()
    assert page["entries"] and page["entries"][0]["kind"] == "repo.upsert"
    assert elapsed < 5


def test_feed_long_poll_answers_empty_at_timeout(node: RunningNode) -> None:
    with node.client() as http:
        head = http.get("/v1/sync/changes").json()["head"]
        page = http.get("/v1/sync/changes", params={"since": head, "wait": 0.3}).json()
    assert page["entries"] == [] and page["last_serial"] == head


def test_feed_refuses_a_wrong_expected_node_and_a_cursor_ahead(node: RunningNode) -> None:
    with node.client() as http:
        wrong = http.get("/v1/sync/changes", headers={"X-Modelyard-Expect-Node": "other"})
        ahead = http.get("/v1/sync/changes", params={"since": 10_000})
    assert wrong.status_code == 409 and wrong.headers["X-Error-Code"] == "PeerMismatch"
    assert ahead.status_code == 409 and ahead.headers["X-Error-Code"] == "CursorAhead"
