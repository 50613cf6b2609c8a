"""Size limits: `BodyLimit` caps requests before they reach a route (header bytes, then bodies:
JSON, NDJSON commits and streamed blob uploads each have their own cap), and the checks routes
make on declared file sizes and file counts before any byte is stored.

Every refusal names its setting in the `X-Modelyard-Limit` header (and `detail.limit`), which
`HttpMetrics` counts as `modelyard_limit_rejections_total{limit}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response
from registry.domain.errors import TooLargeError
from registry.metrics import LIMIT_HEADER
from registry.service.commits import AddBytes, Operation
from registry.settings import LimitSettings

# Uploads that stream to the blob store; capped at the size of one file.
_STREAMED = ("/lfs/objects/", "/v1/blobs/")
_PAGE_UPLOAD = re.compile(r"^/(datasets/)?[^/]+/[^/]+/upload/")
_XET = ("/cas/v1/xorbs/", "/cas/v1/shards")  # spooled to disk, or parsed in memory
_BODY = {
    "max_blob_bytes": "A file",
    "max_xet_body_bytes": "A Xet xorb or shard",
    "max_commit_bytes": "A commit body",
    "max_json_bytes": "A request body",
    "max_image_bytes": "An image",
}
_IMAGE_BODIES = ("/v1/workflows/resolve",)  # JSON, or (sent as image/png) a PNG embedding it


def too_large(limit: str, message: str, **detail: object) -> TooLargeError:
    """A 413 naming the setting that refused it."""
    return TooLargeError(
        f"{message} (limit {limit}: MODELYARD_LIMITS__{limit.upper()})",
        detail={"limit": limit, **detail},
    )


def check_file_sizes(limits: LimitSettings, files: Iterable[tuple[str, int]]) -> None:
    """Refuse declared (name, size) files larger than one file may be."""
    cap = limits.max_blob_bytes
    for name, size in files:
        if cap and size > cap:
            raise too_large(
                "max_blob_bytes",
                f"{name} is {size} bytes; this node accepts files of at most {cap} bytes",
                file=name,
                size=size,
                max=cap,
            )


def check_commit(limits: LimitSettings, operations: Sequence[Operation]) -> None:
    """Refuse a commit with too many file operations, or an inline file that is too large."""
    cap = limits.max_commit_operations
    if cap and len(operations) > cap:
        raise too_large(
            "max_commit_operations",
            f"The commit has {len(operations)} file operations; this node accepts at most "
            f"{cap} per commit: split it into several commits",
            operations=len(operations),
            max=cap,
        )
    check_file_sizes(
        limits, ((op.path, len(op.data)) for op in operations if isinstance(op, AddBytes))
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, limits: LimitSettings) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope["path"], dict(scope["headers"]).get(b"content-type", b""))
        refusal = self._headers_refusal(scope)
        if refusal is None and cap is not None:
            refusal = _declared_refusal(scope, *cap)
        if refusal is not None:
            await refusal(scope, receive, send)
        elif cap is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, _capped(receive, *cap), send)

    def _cap(self, path: str, content_type: bytes) -> tuple[str, int] | None:
        if path.startswith(_STREAMED):
            name = "max_blob_bytes"
        elif path.startswith(_XET):
            name = "max_xet_body_bytes"
        elif _PAGE_UPLOAD.match(path):  # a browser's upload form, streamed into blobs
            name = "max_blob_bytes"
        elif "/commit/" in path and path.startswith("/api/"):
            name = "max_commit_bytes"
        elif path in _IMAGE_BODIES and content_type.lower().startswith(b"image/"):
            name = "max_image_bytes"
        else:
            name = "max_json_bytes"
        cap: int = getattr(self.limits, name)
        return (name, cap) if cap else None

    def _headers_refusal(self, scope: Scope) -> JSONResponse | None:
        header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        cap = self.limits.max_header_bytes
        if header_bytes <= cap:
            return None
        return error_response(
            431,
            "HeadersTooLarge",
            f"Request headers of {header_bytes} bytes exceed the limit of {cap} bytes "
            "(limit max_header_bytes: MODELYARD_LIMITS__MAX_HEADER_BYTES)",
            {"limit": "max_header_bytes", "max": cap},
            headers={LIMIT_HEADER: "max_header_bytes"},
        )


def _declared_refusal(scope: Scope, name: str, cap: int) -> JSONResponse | None:
    """A 413 for a declared Content-Length over the cap, before a byte is read."""
    declared = dict(scope["headers"]).get(b"content-length", b"0")
    if not declared.isdigit() or int(declared) <= cap:
        return None
    size = int(declared)
    refused = too_large(
        name, f"{_BODY[name]} of {size} bytes exceeds the limit of {cap} bytes", size=size, max=cap
    )
    return error_response(
        413, refused.code, refused.message, refused.detail, headers={LIMIT_HEADER: name}
    )


def _capped(receive: Receive, name: str, cap: int) -> Receive:
    """`receive` that raises a 413 once more than `cap` body bytes came in (no Content-Length,
    or a client sending more than it declared)."""
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > cap:
            raise too_large(name, f"{_BODY[name]} exceeds the limit of {cap} bytes", max=cap)
        return message

    return capped
