"""A typed client of a node's native API, used by `sync` to pull from peers.

Idempotent calls (GET, HEAD) are retried on timeouts, network errors, 408, 429 and 5xx
(honouring `Retry-After`) through a tenacity `Retrying` built from a frozen RetryPolicy, so
tests can pass zero waits. Errors are decoded in exactly one place, `raise_for_error`. GETs
follow redirects that `RedirectGuard` allows (httpx drops the token when one leaves the
node's origin); other calls treat a redirect as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from registry import __version__
from registry.client.redirects import RedirectGuard, shown
from registry.domain import errors as e
from registry.domain.digest import Digest
from registry.domain.manifest import Manifest, parse_manifest
from registry.domain.urls import safe_url
from registry.wire import FeedOut, FeedPositionOut, Health, SetAsideOut, WorkflowResolutionOut

logger = logging.getLogger(__name__)
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class TransientError(Exception):
    """A retryable failure (network, timeout, 408/429/5xx); carries the response if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait: float = 0.2
    max_wait: float = 5.0


def raise_for_error(response: httpx.Response) -> None:
    """Raise the registry error a node's answer carries; return if it is a success.

    The class is the one `registry.domain.errors.ERRORS_BY_CODE` has for the answer's code
    (`X-Error-Code`), RegistryError for a code it does not know; the message and the
    server's request id (`detail["request_id"]`) come with it.

    Raises:
        TransientError: 408, 429, 500, 502, 503 or 504 (retried by the calls, not decoded).
        UpstreamError: a redirect, which the calls that get here do not follow.
        RegistryError: any other error answer, as the class of its code.
    """
    if response.status_code < 300:
        return
    if response.status_code < 400:
        location = response.headers.get("location")
        where = f", a redirect to {safe_url(location.split('?')[0])}" if location else ""
        raise e.UpstreamError(
            f"{response.request.method} {shown(response.request.url)} answered "
            f"{response.status_code}{where}, which this call does not follow: "
            "configure the URL it points to"
        )
    if response.status_code in RETRY_STATUS:
        after = response.headers.get("retry-after", "")
        raise TransientError(
            f"{response.request.method} {shown(response.request.url)} answered "
            f"{response.status_code}",
            float(after) if after.replace(".", "", 1).isdigit() else None,
        )
    code = response.headers.get("x-error-code", "")
    try:
        message = str(response.json().get("error") or response.text)
    except ValueError:
        message = response.text[:500]
    cls = e.ERRORS_BY_CODE.get(code, e.RegistryError)
    error = cls(message or f"HTTP {response.status_code}")
    error.detail["request_id"] = response.headers.get("x-request-id", "")
    raise error


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError | httpx.TransportError)


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        node_id: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        allow_private_redirects: bool = False,
    ) -> None:
        headers = {"user-agent": f"modelyard/{__version__} node/{node_id or '-'}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if node_id:
            headers["x-modelyard-node"] = node_id
        self.base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            event_hooks={"response": [RedirectGuard(allow_private_redirects)]},
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _retrying(self) -> Retrying:
        policy = self._retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return min(exc.retry_after, policy.max_wait)
            jitter = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
            return float(jitter(state))

        return Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            reraise=True,
            before_sleep=before_sleep_log(logger, logging.WARNING),
        )

    def _get(
        self,
        path: str,
        params: dict[str, str | int | float] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        for attempt in self._retrying():
            with attempt:
                response = self._http.get(
                    path,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else self._http.timeout,
                    follow_redirects=True,
                )
                raise_for_error(response)
        return response

    def health(self) -> Health:
        return Health.model_validate(self._get("/v1/health").json())

    def changes(
        self,
        since: int,
        *,
        limit: int = 500,
        wait: float = 0,
        expect_node: str | None = None,
        since_chain: str | None = None,
        set_aside: int = 0,
        reader_url: str | None = None,
    ) -> FeedOut:
        """A page of the node's change feed. `set_aside`: how many entries of the node's old
        history (before it was restored) the reader keeps; told with `reader_url`, so the
        node's status says where to recover them from."""
        headers = {"x-modelyard-expect-node": expect_node} if expect_node else {}
        if set_aside:
            headers["x-modelyard-set-aside"] = str(set_aside)
        if reader_url:
            headers["x-modelyard-url"] = reader_url
        params: dict[str, str | int | float] = {"since": since, "limit": limit, "wait": wait}
        if since_chain:
            params["since_chain"] = since_chain
        response = self._get("/v1/sync/changes", params=params, headers=headers, timeout=wait + 30)
        return FeedOut.model_validate(response.json())

    @contextmanager
    def snapshot(self, read_timeout: float = 600.0) -> Iterator[Iterator[bytes]]:
        """The node's snapshot (`GET /v1/sync/snapshot`) as NDJSON lines, each with its
        newline, as they stream in; the caller checks the trailer's digest (sync.bootstrap).
        The node reads its whole log before the entries begin: reads may wait long."""
        timeout = httpx.Timeout(self._http.timeout.connect or 30.0, read=read_timeout)
        with self._http.stream("GET", "/v1/sync/snapshot", timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response)
            yield _lines(response.iter_bytes(1024 * 1024))

    def set_aside(self, origin: str, since: int = 0, limit: int = 500) -> SetAsideOut:
        """A page of the entries of `origin`'s old history the node kept (see
        registry.service.recovery)."""
        params: dict[str, str | int | float] = {"origin": origin, "since": since, "limit": limit}
        return SetAsideOut.model_validate(self._get("/v1/sync/set-aside", params=params).json())

    def position(self, serial: int) -> FeedPositionOut | None:
        """The entry at `serial` of the node's log (None: there is none)."""
        try:
            response = self._get(f"/v1/sync/positions/{serial}")
        except e.NotFoundError:
            return None
        return FeedPositionOut.model_validate(response.json())

    @contextmanager
    def open_blob(
        self, digest: Digest, max_size: int, start: int = 0, end: int | None = None
    ) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes [start, end) (to the end by default); stops with an error
        past what was asked (a source cannot send endless data). The caller verifies the
        hash (BlobStore.put does). A node whose blobs are in S3 redirects to the bucket: the
        redirect is followed if the guard allows it."""
        ranged = bool(start) or end is not None
        last = "" if end is None else str(end - 1)
        headers = {"range": f"bytes={start}-{last}"} if ranged else {}
        url = f"/v1/blobs/{digest.hex}"
        with self._http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response)
            if ranged and response.status_code != 206:
                raise e.UpstreamError(f"{self.base_url} ignored a Range request")
            wanted = (max_size if end is None else end) - start
            yield _capped(response.iter_bytes(1024 * 1024), wanted)

    def has_blob(self, digest: Digest) -> bool:
        for attempt in self._retrying():
            with attempt:
                response = self._http.head(f"/v1/blobs/{digest.hex}")
                if response.status_code == 404:
                    return False
                raise_for_error(response)
        return True

    def upload_blob(self, digest: Digest, source: Path) -> None:
        """PUT a blob from a file (stored only if it hashes to `digest`); retried, since a
        content-addressed PUT is idempotent: each attempt re-opens the file."""
        for attempt in self._retrying():
            with attempt, source.open("rb") as body:
                response = self._http.put(
                    f"/v1/blobs/{digest.hex}",
                    content=_file_chunks(body),
                    headers={"content-length": str(source.stat().st_size)},
                    timeout=None,
                )
                raise_for_error(response)

    def manifest(self, repo_type: str, repo: str, revision: str) -> Manifest:
        path = f"/v1/repos/{repo_type}/{repo}/manifest/{quote(revision, safe='')}"
        return parse_manifest(self._get(path).json())

    def resolve_workflow(self, workflow: bytes) -> WorkflowResolutionOut:
        """The models a ComfyUI workflow (JSON) needs and the files on the node that match
        them; retried like a GET, since it changes nothing."""
        for attempt in self._retrying():
            with attempt:
                response = self._http.post(
                    "/v1/workflows/resolve",
                    content=workflow,
                    headers={"content-type": "application/json"},
                )
                raise_for_error(response)
        return WorkflowResolutionOut.model_validate(response.json())

    def hub(
        self,
        method: str,
        path: str,
        *,
        json: object | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One call to the node's Hub-compatible routes (not retried: commits are not
        idempotent); errors are decoded like every other answer."""
        response = self._http.request(method, path, json=json, content=content, headers=headers)
        raise_for_error(response)
        return response


def _file_chunks(body: BinaryIO, size: int = 4 * 1024 * 1024) -> Iterator[bytes]:
    while chunk := body.read(size):
        yield chunk


MAX_LINE = 256 * 1024 * 1024


def _capped(chunks: Iterator[bytes], max_size: int) -> Iterator[bytes]:
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > max_size:
            raise e.SizeMismatchError(f"Source sent more than the expected {max_size} bytes")
        yield chunk


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Bytes cut into lines, each with its newline (a last one without, if the body has it);
    a line longer than `MAX_LINE` stops the read (a source cannot fill the memory)."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        if len(rest) > MAX_LINE:
            raise e.UpstreamError(f"A line of the answer is longer than {MAX_LINE} bytes")
        yield from (part + b"\n" for part in parts)
    if rest:
        yield rest
