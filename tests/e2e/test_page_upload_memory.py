"""An upload from the browser's form is streamed into the blob store, never held in memory: a
512 MiB file posted to a `modelyard serve` process, as a browser posts a form (one
multipart/form-data body with its Content-Length), raises the process's resident-set
high-water mark by far less than the file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from huggingface_hub import HfApi

from tests.e2e.cluster import TOKEN, NodeProcess
from tests.load.procwatch import peak_rss

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MiB = 1024 * 1024
PIECE = bytes(range(256)) * (MiB // 256)
PIECES = 512
BOUNDARY = "----modelyardformboundary"
ALLOWED_GROWTH = 96 * MiB  # what a node may add while streaming; the file is 512 MiB


def form(csrf: str, name: str, pieces: int) -> tuple[list[bytes], int]:
    """The body's head and tail around the file's bytes, and the body's whole length."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return [head, tail], len(head) + pieces * len(PIECE) + len(tail)


def body(head: bytes, tail: bytes, pieces: int) -> Iterator[bytes]:
    yield head
    for _ in range(pieces):
        yield PIECE
    yield tail


def upload(http: httpx.Client, csrf: str, name: str, pieces: int) -> httpx.Response:
    (head, tail), length = form(csrf, name, pieces)
    return http.post(
        "/admin/big/upload/main",
        content=body(head, tail, pieces),
        headers={
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            "content-length": str(length),
            "accept": "application/json",
        },
        timeout=300,
    )


def test_a_browser_form_upload_streams_without_holding_the_file(
    spawn: Callable[..., NodeProcess],
) -> None:
    node = spawn("a")
    assert node.pid is not None
    api = HfApi(endpoint=node.url, token=TOKEN)
    api.create_repo("admin/big")
    with httpx.Client(base_url=node.url, timeout=60) as http:
        assert http.post("/signin", data={"token": TOKEN}).status_code == 303
        page = http.get("/admin/big/upload/main").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        warm = upload(http, csrf, "warm.bin", 4)  # the same code paths, loaded and used once
        assert warm.status_code == 200, warm.text
        before = peak_rss(node.pid)
        answer = upload(http, csrf, "big.bin", PIECES)
        after = peak_rss(node.pid)
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] == ["big.bin"]
    grew = after - before
    assert grew < ALLOWED_GROWTH, f"peak RSS grew {grew / MiB:.0f} MiB for a 512 MiB upload"
    sha = hashlib.sha256()
    for _ in range(PIECES):
        sha.update(PIECE)
    info = api.model_info("admin/big", files_metadata=True)
    stored = {s.rfilename: s for s in info.siblings or []}["big.bin"]
    assert stored.size == PIECES * MiB and stored.lfs is not None
    assert stored.lfs.sha256 == sha.hexdigest()
