"""Serving stored blobs: large reads, Range support, and the headers the Hub client needs."""

from __future__ import annotations

import asyncio
import mmap
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from registry.api.buffers import transfer_buffers
from registry.api.errors import documented
from registry.domain.commit import TreeEntry
from registry.domain.digest import Digest
from registry.domain.errors import InvalidError, RangeNotSatisfiableError
from registry.service.files import Replica, ResolvedFile, Stored, Streamed
from registry.service.scanning import Verdict
from registry.storage import BlobStore

# The `Range` a GET of bytes may send (HEAD ignores it).
_RANGE = {
    "name": "Range",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "bytes=start-end, start- or -n (206); several ranges: the whole file",
}


def bytes_route_docs(method: str) -> dict[str, Any]:
    """OpenAPI arguments of a route serving a blob's bytes (GET) or only its headers (HEAD)."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/octet-stream": {}}},
        **documented(400, 401, 404),
    }
    if method != "GET":
        return {"responses": responses}
    responses[206] = {"description": "Partial Content: the one range asked for"}
    responses[302] = {"description": "Found: the bytes are in the blob store, at Location"}
    return {"responses": responses | documented(416), "openapi_extra": {"parameters": [_RANGE]}}


_SPAN = re.compile(r"\s*(\d{0,20})\s*-\s*(\d{0,20})\s*", re.ASCII)  # beyond any file size


class MappedFileResponse(Response):
    """A file or one byte range of it, sent straight from the page cache.

    Each piece is a memory map of the file, faulted in on a thread (so a cold file never
    blocks the event loop on the disk) while the piece before it is sent; the socket copies
    from the map, with no read into a buffer first. That copy was a third of the node's CPU
    per byte served, and on two shared cores the client downloading needs it. A piece's map
    lives as long as the event loop still holds its bytes, and the node-wide transfer budget
    sizes the pieces, so memory stays bounded whatever the number of downloads.
    """

    def __init__(
        self, path: Path, size: int, headers: dict[str, str], span: tuple[int, int] | None = None
    ) -> None:
        start, end = span or (0, size)
        extra = {"Content-Length": str(end - start)}
        if span is not None:
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        super().__init__(status_code=206 if span else 200, headers={**headers, **extra})
        self._path = path
        self._span = (start, end)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - ASGI signature
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        loop = asyncio.get_running_loop()
        start, end = self._span
        with (
            transfer_buffers(scope["app"]).piece(end - start) as piece,
            self._path.open("rb", buffering=0) as f,
        ):
            offset = start
            pending = loop.run_in_executor(None, _mapped, f, start, min(end, start + piece))
            try:
                while offset < end:
                    body = await pending
                    offset += len(body)
                    if offset < end:
                        pending = loop.run_in_executor(
                            None, _mapped, f, offset, min(end, offset + piece)
                        )
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    del body  # its map closes once the event loop has sent it
            finally:
                pending.cancel()  # the client went away: the next piece is not wanted
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_POPULATE_READ = 22  # MADV_POPULATE_READ (Linux 5.14): fault the pages in, reading the disk


def _mapped(file: BinaryIO, start: int, end: int) -> memoryview:
    """Bytes [start, end) of the file as a view of a read-only map, already faulted in."""
    low = start - start % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(file.fileno(), end - low, access=mmap.ACCESS_READ, offset=low)
    try:
        mapped.madvise(_POPULATE_READ)
    except OSError:  # an older kernel: read ahead instead
        mapped.madvise(mmap.MADV_WILLNEED)
    with memoryview(mapped) as whole:
        return whole[start - low :]  # keeps the map open as long as it lives


def requested_span(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of the bytes a `Range` header asks for; None for the whole file (no header,
    another unit than bytes, or several ranges: a server may answer those with the whole file).

    Raises:
        InvalidError: the header is not `bytes=start-end`, `bytes=start-` or `bytes=-n`.
        RangeNotSatisfiableError: no range asked for overlaps the file.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":  # a unit we do not know: ignored (RFC 9110)
        return None
    matches = [_SPAN.fullmatch(part) for part in spec.split(",") if part.strip()]
    spans = [_span(m.group(1), m.group(2), size) for m in matches if m and any(m.groups())]
    if not spans or len(spans) != len(matches) or None in spans:
        raise InvalidError(
            f"Malformed Range header {header[:100]!r}: use bytes=start-end, start- or -n"
        )
    satisfiable = [span for span in spans if span and span[0] < span[1]]
    if not satisfiable:
        raise RangeNotSatisfiableError(
            f"Range {header[:100]!r} lies outside the file's {size} bytes", detail={"size": size}
        )
    return satisfiable[0] if len(spans) == 1 else None


def _span(first: str, last: str, size: int) -> tuple[int, int] | None:
    """One range clipped to the file, or None when it ends before it starts."""
    if not first:  # the last n bytes
        return max(0, size - int(last)), size
    if last and int(last) < int(first):
        return None
    return int(first), min(size, int(last) + 1 if last else size)


def file_headers(file: ResolvedFile, base: str) -> dict[str, str]:
    """The headers of a `/resolve/` answer: the Hub's, a replica's, the file's scan, and
    for a file servable through Xet what turns the client's Xet download on."""
    return {
        **resolve_headers(file.commit_id, file.entry),
        **replica_headers(file.replica),
        **scan_headers(file.verdict),
        **xet_headers(file, base),
    }


def xet_headers(file: ResolvedFile, base: str) -> dict[str, str]:
    """`X-Xet-Hash` and where to get a read token (absolute: `hf_xet` resolves no relative
    URL); the client takes the size from `X-Linked-Size` (xet-protocol.md §4.1)."""
    if file.xet_hash is None:
        return {}
    repo = file.repo.repo
    route = f"{base}/api/{repo.type.plural}/{repo.full_name}/xet-read-token/{file.commit_id}"
    return {
        "X-Xet-Hash": file.xet_hash.hex,
        "Link": f'<{route}>; rel="xet-auth"',
        "X-Xet-Refresh-Route": route,
    }


def replica_headers(replica: Replica | None) -> dict[str, str]:
    """On a replica: which node is the repo's home, and how old our copy may be."""
    if replica is None:
        return {}
    headers = {"X-Modelyard-Home": replica.home}
    if replica.age_seconds is not None:
        headers["X-Modelyard-Replica-Age"] = f"{replica.age_seconds:.1f}"
    return headers


def scan_headers(verdict: Verdict | None) -> dict[str, str]:
    """Download headers flagging a file's safety scan (unsafe files are served, flagged)."""
    if verdict is None:
        return {}
    headers = {"X-Modelyard-Scan": verdict.status}
    if verdict.findings:
        text = "; ".join(verdict.findings)[:500]
        headers["X-Modelyard-Scan-Findings"] = text.encode("latin-1", "replace").decode("latin-1")
    return headers


def resolve_headers(commit_id: str, entry: TreeEntry) -> dict[str, str]:
    """The HEAD contract of `/resolve/` (hf-hub-protocol.md §3.8), with the true length."""
    return {
        "X-Repo-Commit": commit_id,
        "ETag": f'"{entry.etag}"',
        "X-Linked-Etag": f'"{entry.etag}"',
        "X-Linked-Size": str(entry.size),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(entry.size),
    }


def blob_response(
    source: Stored | Streamed,
    headers: dict[str, str],
    *,
    head: bool = False,
    range_header: str | None = None,
    redirect: bool = True,
) -> Response:
    """A 200/206 response with a blob's bytes; HEAD answers headers only, with the true length.

    Bytes streamed from a peer are sent whole (a Range is for bytes stored here). A store that
    serves its own bytes (S3) gets a redirect, unless `redirect` is False (bytes a page shows:
    its policy loads images from the node alone).
    """
    headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
    if isinstance(source, Streamed):
        return StreamingResponse(source.chunks, headers=headers)
    blobs, digest, size = source.blobs, source.digest, source.size
    if head:
        return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
    headers.pop("Content-Length", None)  # the file response sets it (206 differs)
    path = blobs.local_path(digest)
    span = requested_span(range_header, size)
    if path is not None:
        return MappedFileResponse(path, size, headers, span)
    url = blobs.download_url(digest) if redirect else None
    if url is not None:  # the store serves the bytes (clients follow redirects)
        return RedirectResponse(url, status_code=302, headers=headers)
    start, end = span or (0, size)
    headers["Content-Length"] = str(end - start)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    chunks = _opened(blobs, digest, start, end)
    return StreamingResponse(chunks, status_code=206 if span else 200, headers=headers)


def _opened(blobs: BlobStore, digest: Digest, start: int, end: int) -> Iterator[bytes]:
    """The bytes, opened on the thread that sends them (opening may look up a recipe)."""
    yield from blobs.open(digest, start, end)
