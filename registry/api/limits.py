"""Caps requests before they reach a route: header size, and bodies (JSON, commits and
streamed uploads have different limits)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response
from registry.domain.errors import TooLargeError
from registry.settings import LimitSettings

# Uploads stream to disk and are bounded by their declared size instead.
_STREAMED = ("/lfs/objects/", "/v1/blobs/")


class BodyLimit:
    def __init__(self, app: ASGIApp, limits: LimitSettings) -> None:
        self.app = app
        self.limits = limits

    def _limit(self, path: str) -> int | None:
        if path.startswith(_STREAMED):
            return None
        if "/commit/" in path and path.startswith("/api/"):
            return self.limits.max_commit_bytes
        return self.limits.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
            if header_bytes > self.limits.max_header_bytes:
                response = error_response(
                    431,
                    "HeadersTooLarge",
                    f"Request headers of {header_bytes} bytes exceed the limit of "
                    f"{self.limits.max_header_bytes} bytes",
                )
                await response(scope, receive, send)
                return
        limit = self._limit(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(
                413,
                TooLargeError.code,
                f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLargeError(f"Request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, capped, send)
