"""Pages at the URLs the Hub client prints: each answers HTML for a public repo, a private or
unknown repo is a 404 page, and a hostile card, file name or commit message runs nothing in a
real browser (Debian's Chromium, driven by Playwright; no browser is downloaded)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from huggingface_hub import CommitOperationAdd, HfApi

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


def test_the_urls_the_client_prints_are_pages(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    repo_url = api.create_repo("admin/pages")
    info = api.upload_file(
        path_or_fileobj=b"weights", path_in_repo="lora/w.safetensors", repo_id="admin/pages"
    )
    more = api.create_commit(
        "admin/pages",
        [CommitOperationAdd("README.md", CARD.encode())],
        commit_message="Card for the LoRA",
    )
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


def test_private_and_unknown_repos_are_404_pages(node: RunningNode) -> None:
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
