"""The only place that maps registry errors to HTTP.

Body: `{"error": "<message>", "code": "<code>", "detail": {...}}`. The message is a plain string
(not an object, as style.md suggests) because the huggingface_hub client shows `error` verbatim.
The code is repeated in `X-Error-Code` (what the Hub client maps to exception classes) and
`X-Registry-Error`; HEAD responses have no body, so the headers are the channel there.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from registry.domain import errors as e
from registry.metrics import LIMIT_HEADER

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5  # what a 503 for a fault of the node's own machine asks clients to wait
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

STATUS = [
    (e.UnauthorizedError, 401),
    (e.ForbiddenError, 403),
    (e.NotFoundError, 404),
    (e.ConflictError, 409),
    (e.PeerError, 409),
    (e.PreconditionError, 412),
    (e.TooLargeError, 413),
    (e.UnsupportedMediaTypeError, 415),
    (e.RangeNotSatisfiableError, 416),
    (e.InvalidError, 400),
    (e.UnprocessableError, 422),
    (e.InsufficientStorageError, 507),
    (e.StorageError, 503),
    (e.UpstreamError, 502),
]


def status_of(exc: e.RegistryError) -> int:
    return next((status for family, status in STATUS if isinstance(exc, family)), 500)


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route may answer (`ErrorOut` bodies)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


def error_response(
    status: int,
    code: str,
    message: str,
    detail: dict[str, object] | None = None,
    *,
    extra: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"error": message, "code": code, "detail": detail or {}}
    body.update(extra or {})
    safe = _header_safe(message)
    all_headers = {
        "X-Error-Code": code,
        "X-Registry-Error": code,
        "X-Error-Message": safe,
        "X-Request-Id": uuid.uuid4().hex,
        **(headers or {}),
    }
    return JSONResponse(body, status_code=status, headers=all_headers)


def _header_safe(message: str) -> str:
    """The message as a valid header value: Latin-1 without control characters, the rest
    escaped (a newline from the request would make the server drop the whole answer)."""
    text = message.encode("latin-1", "backslashreplace").decode("latin-1")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:1000]


def registry_error_response(
    exc: e.RegistryError, *, extra: dict[str, object] | None = None
) -> JSONResponse:
    headers = {}
    commit = exc.detail.get("commit")
    if isinstance(exc, e.EntryNotFoundError) and isinstance(commit, str):
        headers["X-Repo-Commit"] = commit
    limit = exc.detail.get("limit")
    if isinstance(exc, e.TooLargeError) and isinstance(limit, str):
        headers[LIMIT_HEADER] = limit  # which setting refused it (and counted in metrics)
    size = exc.detail.get("size")
    if isinstance(exc, e.RangeNotSatisfiableError) and isinstance(size, int):
        headers["Content-Range"] = f"bytes */{size}"
    # Faults that clear by themselves; bytes not here yet are on their way from a peer.
    transient = e.DatabaseUnavailableError | e.BlobStoreUnavailableError | e.BlobUnavailableError
    if isinstance(exc, transient):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return error_response(
        status_of(exc), exc.code, exc.message, exc.detail, extra=extra, headers=headers
    )


async def _on_registry_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.RegistryError)
    if isinstance(exc, e.MACHINE_FAULTS):
        # A fault of the node's own machine (its disk, database or blob store): the one line
        # it gets, with its cause and no traceback (it is not a bug).
        logger.warning(
            "request failed method=%s path=%s code=%s error=%s",
            request.method,
            request.url.path,
            exc.code,
            exc.message,
        )
    if isinstance(exc, e.RepoMovedError):  # a redirect, as the Hub answers; 404 elsewhere
        location = {"Location": moved_location(request, exc)}
        return error_response(307, exc.code, exc.message, exc.detail, headers=location)
    return registry_error_response(exc)


def moved_location(request: Request, exc: e.RepoMovedError) -> str:
    """The URL asked for with the repo's old id (`from`) replaced by its id now (`to`): how
    the Hub redirects requests naming a renamed repo. Relative, so clients keep their host."""
    old, new = str(exc.detail["from"]), str(exc.detail["to"])
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    pattern = re.compile(rf"/{re.escape(quote(old))}(?=/|$)", re.IGNORECASE)
    location = pattern.sub(lambda _m: f"/{quote(new)}", path, count=1)
    query = request.url.query
    return f"{location}?{query}" if query else location


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    return error_response(422, "BadRequest", "Invalid request: " + "; ".join(problems)[:500])


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, e.RegistryError):
        # FastAPI wraps errors raised while it reads a body (e.g. our streamed size cap) in
        # a generic 400; the original error knows the right answer (413).
        return registry_error_response(exc.__cause__)
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
    # Keep the exception's headers: a 405 must say which methods are allowed (`Allow`).
    return error_response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


async def _on_disconnect(request: Request, _exc: Exception) -> JSONResponse:
    # The client hung up mid-body (the upload was aborted, nothing stored): not a server fault.
    logger.info("client disconnected method=%s path=%s", request.method, request.url.path)
    return error_response(400, "BadRequest", "The client disconnected before the body was complete")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error method=%s path=%s", request.method, request.url.path, exc_info=exc
    )
    return error_response(500, "internal", "Internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.RegistryError, _on_registry_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(Exception, _on_unexpected)
