"""A real S3 endpoint for tests: moto's server mode on 127.0.0.1 (boto3 speaks real HTTP to it).

Its state is process-global, so each test gets its own bucket. Stopping and starting the
server on the same port keeps the buckets: that is how tests take "S3" down for a while.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer


@dataclass
class S3Server:
    server: ThreadedMotoServer
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        """Start again on the same port (the data is kept: it lives in this process)."""
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
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
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
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
