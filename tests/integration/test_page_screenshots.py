"""The main pages in Chromium at a phone's width and a desktop's, saved as screenshots under
test-artifacts/screenshots/ (CI keeps them) and checked loosely: the page fills the width
without sideways scrolling (wide tables scroll inside their own box), the stylesheet applied,
every image shown, every form control labelled, and nothing asked of any host but the node."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.integration.test_docs_status_pages import offline

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTHS = {"phone": 390, "desktop": 1280}
CARD = """---
kind: lora
base_model: stabilityai/sdxl-base
license: openrail
tags: [watercolor, landscape]
trigger_words: [wtrcolor style]
---
# Watercolor LoRA

Soft washes and paper texture for SDXL. Use the trigger word at the start of the prompt.
"""


def png(width: int, height: int) -> bytes:
    """A small valid PNG (a sample image for the gallery), written by hand."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([x % 256, 120, 200]) * width for x in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def safetensors() -> bytes:
    header = b'{"w":{"dtype":"F16","shape":[4,4],"data_offsets":[0,32]}}'
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"\x00" * 32


def images_shown(page: Any, name: str) -> None:
    """Every image of the page scrolled to (the gallery's load lazily) and decoded, so the
    screenshot shows them; a broken image fails the test."""
    for image in page.locator("main img").all():
        image.scroll_into_view_if_needed()
    # Polled from Python: wait_for_function polls with eval, which the page's CSP forbids.
    loaded = "[...document.querySelectorAll('main img')].every(i => i.complete)"
    for _ in range(100):
        if page.evaluate(loaded):
            break
        page.wait_for_timeout(100)
    broken = page.evaluate(
        "[...document.querySelectorAll('main img')].filter(i => !i.naturalWidth).map(i => i.src)"
    )
    assert page.evaluate(loaded) and broken == [], (name, broken)
    page.evaluate("window.scrollTo(0, 0)")


@pytest.mark.parametrize("width", WIDTHS)
def test_main_pages_fit_phone_and_desktop_widths(
    node: RunningNode, browser: Any, width: str
) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/watercolor-lora")
    commit = api.create_commit(
        "admin/watercolor-lora",
        [
            CommitOperationAdd("README.md", CARD.encode()),
            CommitOperationAdd("watercolor.safetensors", io.BytesIO(safetensors())),
            CommitOperationAdd("samples/lake.png", png(64, 48)),
        ],
        commit_message="First release",
    )
    repo = f"{node.url}/admin/watercolor-lora"
    pages = {
        "home": f"{node.url}/",
        "search": f"{node.url}/search?q=watercolor",
        "repo": repo,
        "tree": f"{repo}/tree/main",
        "blob": f"{repo}/blob/main/README.md",
        "commit": commit.commit_url,
        "commits": f"{repo}/commits/main",
        "author": f"{node.url}/admin",
        "status": f"{node.url}/status",
        "signin": f"{node.url}/signin",
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": WIDTHS[width], "height": 900})
    refused, served = offline(page)
    for name, url in pages.items():
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, (name, url)
        images_shown(page, name)
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate(
            "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px at {width} width"
        styled = page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth")
        assert styled != "none", name  # the stylesheet applied
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name)"""
        )
        assert unlabelled == [], (name, unlabelled)
    assert refused == []  # no page asked for anything off the node
    assert f"{node.url}/static/modelyard.css" in served
    assert f"{node.url}/admin/watercolor-lora/raw/main/samples/lake.png" in served
