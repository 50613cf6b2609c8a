"""Pages at the URLs the Hub client prints: each answers HTML for a public repo, a private or
unknown repo is a 404 page, and a hostile card, file name or commit message runs nothing in a
real browser (Debian's Chromium, driven by Playwright; no browser is downloaded)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, RepoUrl

from tests.conftest import RunningNode

HOSTILE = "<script>window.__pwned = 1</script>"
CARD = f"""---
kind: lora
base_model: sdxl
license: mit
---
# A LoRA

{HOSTILE}

<img src="x" onerror="window.__pwned = 2">

[click](javascript:window.__pwned=3) and [docs](https://example.org/docs)
"""


def html(url: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(url, headers=headers, timeout=30)
    assert answer.headers["content-type"].startswith("text/html"), (url, answer.text[:300])
    return answer


def published(api: HfApi, repo: str) -> tuple[RepoUrl, CommitInfo, CommitInfo]:
    """A model repo made, a LoRA uploaded and its card committed through the stock client:
    what each call returned (the links it gives a user)."""
    made = api.create_repo(repo)
    uploaded = api.upload_file(
        path_or_fileobj=b"weights", path_in_repo="lora/w.safetensors", repo_id=repo
    )
    card = [CommitOperationAdd("README.md", CARD.encode())]
    return made, uploaded, api.create_commit(repo, card, commit_message="Card for the LoRA")


def test_the_urls_the_client_prints_are_pages(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    repo_url, info, more = published(api, "admin/pages")
    for url in (str(repo_url), info.commit_url, str(info), str(info.repo_url), more.commit_url):
        page = html(url)
        assert page.status_code == 200, url
        assert "admin/pages" in page.text
    commit = html(more.commit_url).text
    assert "Card for the LoRA" in commit and "README.md" in commit and "added" in commit
    repo = html(f"{node.url}/admin/pages").text
    assert "lora/w.safetensors" in repo and "<h1>A LoRA</h1>" in repo and "sdxl" in repo
    tree = html(f"{node.url}/admin/pages/tree/main/lora").text
    assert "lora/w.safetensors" in tree and "README.md" not in tree
    blob = html(f"{node.url}/admin/pages/blob/main/lora/w.safetensors").text
    assert "BLAKE3" in blob and "/admin/pages/resolve/main/lora/w.safetensors" in blob
    css = httpx.get(f"{node.url}/static/modelyard.css")
    assert css.status_code == 200 and "prefers-color-scheme" in css.text

    api.create_repo("admin/frames", repo_type="dataset")
    assert html(f"{node.url}/datasets/admin/frames").status_code == 200


def printed_by_the_hf_cli(node: RunningNode, tmp_path: Path, *args: str) -> str:
    """The URL the `hf` command line prints after it did its work."""
    env = {**os.environ, "HF_ENDPOINT": node.url, "HF_TOKEN": node.admin_token}
    env["HF_HOME"] = str(tmp_path / "hf-cli-home")  # no token or cache of the test run's
    hf = str(Path(sys.executable).parent / "hf")
    done = subprocess.run(
        [hf, *args], env=env, check=True, capture_output=True, text=True, timeout=120
    )
    urls: list[str] = re.findall(r"https?://\S+", done.stdout)
    assert len(urls) == 1, done.stdout
    return urls[0]


def test_every_link_the_client_returns_opens_as_a_page_in_a_browser(
    node: RunningNode, browser: Any, tmp_path: Path
) -> None:
    """The links come from huggingface_hub's own return values (and the `hf` command's
    output), never built by the test; each is opened in Chromium as a person would."""
    api = HfApi(endpoint=node.url, token=node.admin_token)
    model, uploaded, committed = published(api, "admin/linked")
    dataset = api.create_repo("admin/linked-frames", repo_type="dataset")
    proposed = api.create_commit(
        "admin/linked",
        [CommitOperationAdd("proposal.txt", b"p")],
        commit_message="A proposal",
        create_pr=True,
    )
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "f.txt").write_bytes(b"frame")
    folder = api.upload_folder(
        repo_id="admin/linked-frames", repo_type="dataset", folder_path=tmp_path / "frames"
    )
    (tmp_path / "cli.txt").write_bytes(b"from the command line")
    cli_created = printed_by_the_hf_cli(node, tmp_path, "repos", "create", "admin/linked-cli")
    cli_uploaded = printed_by_the_hf_cli(
        node, tmp_path, "upload", "admin/linked-cli", str(tmp_path / "cli.txt"), "cli.txt"
    )
    assert proposed.pr_url is not None
    returned = {  # each URL and what the page's title names
        str(model): "admin/linked",
        str(dataset): "admin/linked-frames",
        str(uploaded): "admin/linked",  # a CommitInfo is its commit URL as a str
        uploaded.commit_url: "admin/linked",
        str(uploaded.repo_url): "admin/linked",
        committed.commit_url: "Card for the LoRA",
        proposed.commit_url: "A proposal",
        proposed.pr_url: "A proposal",
        folder.commit_url: "admin/linked-frames",
        str(folder.repo_url): "admin/linked-frames",
        cli_created: "admin/linked-cli",
        cli_uploaded: "admin/linked-cli",
    }
    assert all(url.startswith(node.url + "/") for url in returned), returned
    assert "/datasets/admin/linked-frames/commit/" in folder.commit_url
    repo = f"{node.url}/admin/linked"
    frames = f"{node.url}/datasets/admin/linked-frames"
    shapes = {  # the other pages the issue names, at the Hub's URL shapes
        f"{node.url}/": "Models",
        f"{node.url}/search?q=lora&kind=lora&base_model=sdxl&tag=&sort=downloads": "Search",
        f"{node.url}/admin": "admin",
        f"{repo}/tree/main": "admin/linked",
        f"{repo}/tree/main/lora": "admin/linked",
        f"{repo}/blob/main/lora/w.safetensors": "w.safetensors",
        f"{repo}/commits/main": "admin/linked",
        f"{frames}/tree/main": "admin/linked-frames",
        f"{frames}/blob/main/f.txt": "admin/linked-frames",
        f"{frames}/commits/main": "admin/linked-frames",
        f"{node.url}/status": "Status",
    }
    page = browser.new_page()
    for url, title in {**returned, **shapes}.items():
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, (url, answer and answer.status)
        assert answer.headers["content-type"].startswith("text/html"), url
        assert title in page.title(), (url, page.title())
        assert page.locator("main h1").count() >= 1, url
        assert "NotFound" not in page.locator("body").inner_text(), url
    commit = page.goto(committed.commit_url)
    assert commit is not None and "README.md" in page.locator("main").inner_text()
    page.goto(proposed.pr_url)
    assert "refs/pr/1" in page.locator("main").inner_text()
    page.goto(f"{node.url}/")  # the home page's search box and filters
    page.fill("#q", "lora")
    page.select_option("#kind", "lora")
    page.fill("#base_model", "sdxl")
    page.select_option("#sort", "downloads")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**/search?*")
    assert "kind=lora" in page.url and "base_model=sdxl" in page.url, page.url
    assert page.locator("table.results a[href='/admin/linked']").count() == 1
    assert page.locator("table.results a[href='/admin/linked-cli']").count() == 0
    docs = page.goto(f"{node.url}/docs")
    assert docs is not None and docs.status == 200
    assert docs.headers["content-type"].startswith("text/html")


def test_home_and_search_list_uploads_with_their_facts(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/watercolor-lora")
    api.upload_file(
        path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id="admin/watercolor-lora"
    )
    api.create_repo("admin/other-model")
    api.create_repo("admin/secret-lora", private=True)
    home = html(node.url + "/").text
    assert "admin/watercolor-lora" in home and "admin/other-model" in home
    assert 'action="/search"' in home and "Latest uploads" in home and "Most downloaded" in home
    found = html(node.url + "/search?q=watercolor&kind=lora&sort=downloads").text
    assert "admin/watercolor-lora" in found and "admin/other-model" not in found
    assert "sdxl" in found and "indexed" in found
    assert "secret" not in html(node.url + "/search?q=lora").text  # private: not listed
    assert "secret-lora" in html(node.url + "/search?q=lora", node.admin_token).text
    odd = html(node.url + "/search?sort=nonsense&offset=-5")  # forgiving, not a 422
    assert odd.status_code == 200


def test_private_and_unknown_repos_are_404_pages(node: RunningNode, browser: object) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/hidden", private=True)
    for path in (
        "/admin/hidden",
        "/admin/nothing",
        "/admin/hidden/commit/main",
        "/admin/x/tree/main",
    ):
        assert html(node.url + path).status_code == 404, path
    assert html(node.url + "/admin/hidden", node.admin_token).status_code == 200
    assert httpx.get(node.url + "/api/models").status_code == 200  # API routes still win
    api.create_repo("admin/shown-beside")
    page = browser.new_page()  # type: ignore[attr-defined]
    for path in ("/admin/hidden", "/admin/hidden/tree/main", "/admin/hidden/commits/main"):
        answer = page.goto(node.url + path)
        assert answer is not None and answer.status == 404, path
        assert page.title().startswith("404"), (path, page.title())
        assert "hidden" not in page.locator("main").inner_text(), path
    for path in ("/", "/search?q=admin", "/search?sort=recent", "/admin"):
        answer = page.goto(node.url + path)
        assert answer is not None and answer.status == 200, path
        listed = page.locator("main").inner_text()
        assert "admin/shown-beside" in listed and "admin/hidden" not in listed, path


def test_hostile_content_runs_nothing_in_a_browser(node: RunningNode, browser: object) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/hostile")
    info = api.create_commit(
        "admin/hostile",
        [
            CommitOperationAdd("README.md", CARD.encode()),
            CommitOperationAdd('<svg onload="window.__pwned=4">.txt', b"x"),
        ],
        commit_message=f"hello {HOSTILE}",
        commit_description=f'<img src=x onerror="window.__pwned=5"> {HOSTILE}',
    )
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs: list[str] = []

    def opened(dialog: object) -> None:
        dialogs.append(str(dialog.message))  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", opened)
    search = f"{node.url}/search?q=" + quote(HOSTILE + '"><img src=x onerror="window.__pwned=6">')
    for url in (
        f"{node.url}/",
        search,
        f"{node.url}/admin/hostile",
        info.commit_url,
        f"{node.url}/admin/hostile/commits/main",
        f"{node.url}/admin/hostile/tree/main",
    ):
        page.goto(url)
        assert page.evaluate("window.__pwned") is None, url
        own = "script:not([src='/static/modelyard.js'])"  # the node's copy buttons only
        assert page.evaluate(f'document.querySelectorAll("{own}").length') == 0, url
        assert page.evaluate("document.querySelectorAll('[onerror], [onload]').length") == 0, url
    page.goto(f"{node.url}/admin/hostile")
    assert page.locator("#card h1").inner_text() == "A LoRA"
    assert page.locator("#card a[href^='javascript']").count() == 0
    assert page.locator("#card a[href='https://example.org/docs']").count() == 1
    assert "<script>" in page.locator("#card").inner_text()  # shown as text, not run
    for url in (info.commit_url, f"{node.url}/admin/hostile/commits/main"):
        page.goto(url)
        assert f"hello {HOSTILE}" in page.locator("main").inner_text(), url  # as text
    assert dialogs == []


def test_raw_files_never_render_as_pages_and_follow_the_session(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/shown", private=True)
    api.create_commit(
        "admin/shown",
        [
            CommitOperationAdd("lake.png", b"\x89PNG\r\n\x1a\n fake"),
            CommitOperationAdd("evil.html", HOSTILE.encode()),
            CommitOperationAdd("evil.svg", b'<svg onload="alert(1)"/>'),
        ],
        commit_message="files",
    )
    raw = f"{node.url}/admin/shown/raw/main"
    assert httpx.get(f"{raw}/lake.png").status_code == 404  # private: not for anyone
    with httpx.Client(timeout=30) as http:
        signed = http.post(f"{node.url}/signin", data={"token": node.admin_token})
        assert signed.status_code == 303
        image = http.get(f"{raw}/lake.png")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
        for name in ("evil.html", "evil.svg"):
            text = http.get(f"{raw}/{name}")
            assert text.headers["content-type"].startswith("text/plain"), name
            assert text.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in text.headers["content-security-policy"]
        page = http.get(f"{node.url}/admin/shown")
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert api.model_info("admin/shown").downloads == 0  # page views are not downloads
