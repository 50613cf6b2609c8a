"""A real S3 endpoint for tests: moto's server mode on 127.0.0.1 (boto3 speaks real HTTP to it).

Its state is process-global, so each test gets its own bucket. Stopping and starting the
server on the same port keeps the buckets: that is how tests take "S3" down for a while.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server


class _OneWriterPerKey:
    """WSGI wrapper: PUTs to one key take turns. moto answers 500 when two PUTs of the same
    key overlap (it closes the first upload's data while that request still reads it), and
    boto3's retries can all lose the race; S3 itself takes concurrent PUTs of a key, last one
    winning. Writes to different keys still run at once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "PUT":
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        with self._guard:
            lock = self._locks.setdefault(environ.get("PATH_INFO", ""), threading.Lock())
        with lock:  # the whole answer is made under it: moto reads the body as it answers
            return list(self.app(environ, start_response))


class MotoServer(ThreadedMotoServer):
    """moto's threaded server, its app wrapped in `_OneWriterPerKey` (the body of
    `ThreadedMotoServer._server_entry` with the wrapper added)."""

    def _server_entry(self) -> None:
        app = _OneWriterPerKey(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class S3Server:
    server: MotoServer
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        """Start again on the same port (the data is kept: it lives in this process)."""
        self.server = MotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()


# What boto3 needs besides an endpoint; moto accepts any credentials.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_s3_server() -> S3Server:
    """A moto server on a free port of 127.0.0.1 (stop it when done)."""
    # Its werkzeug logs every request at INFO: a failing test's captured log would drown in it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = MotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return S3Server(server, server.get_host_and_port()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    running = start_s3_server()
    yield running
    running.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; boto3's usual chain (the environment) points at the moto server."""
    for key, value in {"AWS_ENDPOINT_URL": s3_server.url, **CREDENTIALS}.items():
        monkeypatch.setenv(key, value)
    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
