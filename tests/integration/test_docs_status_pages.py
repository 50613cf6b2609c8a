"""The API docs (`/docs`, `/redoc`) render in a real browser with every request off the node
refused, and `/status` is a page like the others, linked from them (Debian's Chromium, driven
by Playwright)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from huggingface_hub import HfApi

from registry import __version__
from tests.conftest import RunningNode

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route


def offline(page: Page) -> tuple[list[str], list[str]]:
    """Refuse every request the page makes to a host other than 127.0.0.1; return the lists
    of refused and of served URLs, filled as the page loads."""
    refused: list[str] = []
    served: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            served.append(url)
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", handle)
    return refused, served


def test_docs_render_their_operations_with_no_request_off_the_node(
    node: RunningNode, browser: Browser
) -> None:
    page = browser.new_page()
    refused, served = offline(page)
    page.goto(f"{node.url}/docs")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    paths = {
        page.locator(".opblock-summary-path").nth(i).get_attribute("data-path")
        for i in range(page.locator(".opblock-summary-path").count())
    }
    assert {"/v1/status", "/api/{repo_type}/{namespace}/{name}"} <= paths, sorted(map(str, paths))
    assert page.locator(".opblock").count() > 20
    assert refused == []
    assert f"{node.url}/static/docs/swagger-ui-bundle.js" in served
    assert f"{node.url}/static/docs/swagger-ui.css" in served


def test_redoc_renders_with_no_request_off_the_node(node: RunningNode, browser: Browser) -> None:
    page = browser.new_page()
    refused, served = offline(page)
    page.goto(f"{node.url}/redoc")
    page.locator("[data-section-id]").first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert page.locator("h2", has_text="Status Json").count() == 1
    assert refused == []
    assert f"{node.url}/static/docs/redoc.standalone.js" in served


def test_status_is_a_page_like_the_others_linked_from_home(
    node: RunningNode, browser: Browser
) -> None:
    HfApi(endpoint=node.url, token=node.admin_token).create_repo("admin/on-status")
    page = browser.new_page()
    page.goto(f"{node.url}/")
    page.locator("header.top a[href='/status']").click()
    page.wait_for_url(f"{node.url}/status")
    assert page.locator("header.top a[href='/search']").count() == 1
    assert page.locator("link[rel=stylesheet][href='/static/modelyard.css']").count() == 1
    header = "getComputedStyle(document.querySelector('header.top')).display"
    assert page.evaluate(header) == "flex"  # the shared stylesheet applies
    status = httpx.get(f"{node.url}/v1/status", timeout=30).json()
    assert status["node_id"] == node.settings.node_id
    assert status["node_id"] in page.locator("header.top .brand").inner_text()
    assert page.locator("h1").inner_text() == f"Status of {status['node_id']}"
    facts = dict(
        zip(
            page.locator("dl.facts dt").all_inner_texts(),
            page.locator("dl.facts dd").all_inner_texts(),
            strict=True,
        )
    )
    assert facts["Version"] == status["version"] == __version__
    assert facts["Change log"] == f"serial {status['serial']}" and status["serial"] > 0
    assert facts["Storage"].startswith(f"{status['blobs']} blobs, ")
    assert "free of" in facts["Disk"] and facts["Search index"]
    assert page.locator("#peers").inner_text().endswith("no peers configured")
    assert "admin/on-status" in page.locator("#recent").inner_text()
    assert page.evaluate("document.querySelectorAll('script').length") == 0
