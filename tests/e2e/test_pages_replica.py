"""A replica's pages while its home node is gone: two node processes, the home killed, and the
replica still answering every page of the repo from its own copy, with a banner saying the
home is unreachable, how long ago the replica last heard from it, and where changes go."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until

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


def test_replica_pages_answer_with_a_banner_while_the_home_is_down(spawn: Spawn) -> None:
    home, replica = spawn("home"), spawn("replica")
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
