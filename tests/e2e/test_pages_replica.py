"""A replica's pages while its home node is gone: two node processes, the home killed, and the
replica still answering every page of the repo from its own copy, with a banner saying the
home is unreachable, how long ago the replica last heard from it, and where changes go; read
as HTML and in Chromium, with both nodes on SQLite + their data dirs and on PostgreSQL + S3
(the CI's second pass, which sets the backends for tests/integration only, runs no e2e)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.conftest import postgres_database_for
from tests.e2e.cluster import TOKEN, NodeProcess, wait_until
from tests.schemas import SQLITE_FILE
from tests.tools import require_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Spawn = Callable[..., NodeProcess]
CARD = b"---\nkind: lora\ntrigger_words: [zqkept]\n---\n# Kept\n\nA repo that outlives its home.\n"
NOTES = b"notes kept on the replica\n"


def head_of(node: NodeProcess, repo: str) -> str | None:
    try:
        return HfApi(endpoint=node.url, token=TOKEN).model_info(repo).sha
    except HfHubHTTPError:
        return None


def page(url: str) -> httpx.Response:
    answer = httpx.get(url, timeout=30)
    assert answer.headers["content-type"].startswith("text/html"), (url, answer.text[:300])
    return answer


def peer_state(node: NodeProcess) -> str:
    return str(node.peers()[0]["state"])


@dataclass
class Backend:
    env: Callable[[str], dict[str, str]]  # a node's environment, by its name
    used: Callable[[NodeProcess], bool]  # whether the node keeps its state there


@pytest.fixture(params=["sqlite", pytest.param("postgres+s3", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each node's environment for the backend: nothing (SQLite and the data dir), or its own
    PostgreSQL database and a prefix in the test's S3 bucket (moto, on 127.0.0.1)."""
    if request.param == "sqlite":
        return Backend(lambda _name: {}, lambda node: (node.data_dir / SQLITE_FILE).exists())
    require_postgres()
    bucket = request.getfixturevalue("s3_bucket")  # sets AWS_ENDPOINT_URL and credentials

    def env(name: str) -> dict[str, str]:
        database = postgres_database_for(tmp_path / name)
        return {"MODELYARD_DATABASE_URL": database, "MODELYARD_BLOB_STORE": f"s3://{bucket}/{name}"}

    def used(node: NodeProcess) -> bool:
        listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{node.name}/")
        return listed["KeyCount"] > 0 and not (node.data_dir / SQLITE_FILE).exists()

    return Backend(env, used)


def test_replica_pages_answer_with_a_banner_while_the_home_is_down(
    spawn: Spawn, backend: Backend, browser: Any
) -> None:
    home = spawn("home", env=backend.env("home"))
    replica = spawn("replica", env=backend.env("replica"))
    replica.add_peer(home)
    api = HfApi(endpoint=home.url, token=TOKEN)
    api.create_repo("admin/kept")
    sha = api.create_commit(
        "admin/kept",
        [CommitOperationAdd("README.md", CARD), CommitOperationAdd("notes.txt", NOTES)],
        commit_message="Keep this",
    ).oid
    wait_until(lambda: head_of(replica, "admin/kept") == sha)
    blob_url = f"{replica.url}/admin/kept/blob/main/notes.txt"
    wait_until(lambda: NOTES.decode().strip() in page(blob_url).text)  # the bytes are here
    wait_until(lambda: peer_state(replica) == "up")
    assert backend.used(home) and backend.used(replica)
    assert "replica-banner" not in page(f"{replica.url}/admin/kept").text  # the home is up
    assert "replica-banner" not in page(f"{home.url}/admin/kept").text  # the home itself

    home.kill()
    wait_until(lambda: peer_state(replica) == "down")
    for path in (
        "/admin/kept",
        "/admin/kept/tree/main",
        "/admin/kept/blob/main/notes.txt",
        f"/admin/kept/commit/{sha}",
        "/admin/kept/commits/main",
    ):
        answer = page(replica.url + path)
        assert answer.status_code == 200, path
        text = answer.text
        banner = text[
            text.index('id="replica-banner"') : text.index("</p>", text.index("replica-banner"))
        ]
        assert "Home node unreachable" in banner and "<b>home</b>" in banner, path
        assert re.search(r"last heard from the home\s+\d+ seconds? ago", banner), banner
        assert "Changes must be made on the home node" in banner, path
        assert f'<a href="{home.url}/admin/kept">' in banner, path
    repo = page(f"{replica.url}/admin/kept").text
    assert "<code data-copy>zqkept</code>" in repo and "notes.txt" in repo
    assert NOTES.decode().strip() in page(blob_url).text
    assert "Keep this" in page(f"{replica.url}/admin/kept/commit/{sha}").text

    # In Chromium, signed in on the replica: the pages, the banner, no write actions.
    tab = browser.new_page()
    tab.goto(f"{replica.url}/signin?next=/admin/kept")
    tab.fill("#token", TOKEN)
    tab.click("main button[type=submit]")
    tab.wait_for_url(f"{replica.url}/admin/kept")
    for path in ("/admin/kept", "/admin/kept/blob/main/notes.txt", f"/admin/kept/commit/{sha}"):
        answer = tab.goto(replica.url + path)
        assert answer is not None and answer.status == 200, path
        banner = tab.locator("#replica-banner")
        assert banner.is_visible(), path
        assert "Home node unreachable" in banner.inner_text(), path
        assert banner.locator("a").get_attribute("href") == f"{home.url}/admin/kept", path
        assert tab.locator("a", has_text="Upload files").count() == 0, path
        assert "made on its home node" in tab.locator("main").inner_text(), path
    tab.goto(f"{replica.url}/admin/kept")
    assert tab.locator("#trigger-words code").inner_text() == "zqkept"
    assert tab.locator("#files", has_text="notes.txt").count() == 1
