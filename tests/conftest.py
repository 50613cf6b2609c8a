"""Shared fixtures: clean environment, a real node served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn

from registry.runtime import Runtime
from registry.settings import Settings
from tests import schemas
from tests.s3 import (
    CREDENTIALS,
    S3Server,
    s3_bucket,  # noqa: F401 - a fixture for every test module
    s3_server,  # noqa: F401 - a fixture for every test module
    start_s3_server,
)
from tests.schemas import place_sqlite, postgres_template
from tests.tools import require

ADMIN_TOKEN = "myd_test_admin_token"
# Which metadata backend nodes under test use: "sqlite" (default) or "postgres", and which
# blob store: "local" (default: the data dir) or "s3". Read once, before the autouse fixture
# below clears every MODELYARD_* variable from each test.
TEST_DATABASE = os.environ.get("MODELYARD_TEST_DATABASE", "sqlite")
TEST_BLOB_STORE = os.environ.get("MODELYARD_TEST_BLOB_STORE", "local")


_HF_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    # huggingface_hub reads these at import time: no Xet, no telemetry, no user token file.
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_ETAG_TIMEOUT"] = "30"
    os.environ.pop("HF_TOKEN", None)
    os.environ.pop("HF_ENDPOINT", None)
    # Its own cache per process: pytest-xdist workers, and test runs side by side, share none.
    config.stash[_HF_HOME] = tempfile.mkdtemp(prefix="modelyard-test-hf-home-")
    os.environ["HF_HOME"] = config.stash[_HF_HOME]


def pytest_unconfigure(config: pytest.Config) -> None:
    schemas.close()
    if _HF_HOME in config.stash:
        shutil.rmtree(config.stash[_HF_HOME], ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On pytest-xdist workers, the long tests (marked `slow` or `e2e`) first. With
    `--maxschedchunk 1` (pyproject.toml) each worker is handed its next test as it frees up,
    so the long tests start first, spread over the workers, and the short ones fill in behind
    them. In collection order the four fuzz runs queued up on one worker and ended the run
    about a minute after the others. A test marked `alone` goes last of all: handed out in the
    middle, it waited for the long tests then running (up to two minutes) while it kept the
    others from starting new ones; at the end it waits only for the last short ones."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return

    def order(item: pytest.Item) -> tuple[bool, bool]:
        long = any(item.iter_markers("slow")) or any(item.iter_markers("e2e"))
        return any(item.iter_markers("alone")), not long

    items.sort(key=order)


@pytest.fixture(autouse=True)
def _alone_under_xdist(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist, a test marked `alone` runs while no other test of the run does; the
    others wait for it (a readers-writer lock shared by the workers, on files in the run's
    temporary directory). The load test measures the node's throughput against its memory:
    with other workers taking the CPU it moves half the bytes, and its leak check sees half a
    leak. Autouse fixtures are set up first and torn down last, so the lock also covers the
    other fixtures (nodes) of a test."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    run_dir = tmp_path_factory.getbasetemp().parent  # popen-gwN's parent: one per run
    alone = request.node.get_closest_marker("alone") is not None
    with (
        (run_dir / "alone.turnstile").open("a") as turnstile,
        (run_dir / "alone.room").open("a") as room,
    ):
        # An `alone` test holds the turnstile while it waits for the room and while it runs, so
        # no new test gets in meanwhile; every other test only passes through it.
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if alone:
            fcntl.flock(room, fcntl.LOCK_EX)
        else:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            fcntl.flock(room, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    node_env(monkeypatch)


def node_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment nodes under test start in: no MODELYARD_ variable of the caller's, and
    with MODELYARD_TEST_BLOB_STORE=s3 the credentials for boto3 (the endpoint is in their
    settings). A fixture wider than a test sets it with `pytest.MonkeyPatch.context()`."""
    for key in list(os.environ):
        if key.startswith("MODELYARD_"):
            monkeypatch.delenv(key)
    if TEST_BLOB_STORE == "s3":
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)


_blob_servers: list[S3Server] = []  # the one below, while the session runs


@pytest.fixture(scope="session", autouse=True)
def _blob_server() -> Iterator[None]:
    """With MODELYARD_TEST_BLOB_STORE=s3, the moto server holding every node's blobs. It is not
    `s3_server`: tests stop that one to take "S3" (a mirror, an upstream) down, and the nodes
    under test must keep their blob store meanwhile. moto's state is process-global, so the
    buckets are visible through either server."""
    if TEST_BLOB_STORE != "s3":
        yield
        return
    _blob_servers.append(start_s3_server())
    yield
    _blob_servers.pop().stop()


class ServerThread:
    """uvicorn running an app in a thread on a socket bound to 127.0.0.1:0."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,  # a peer's long-poll must not hold the teardown
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()


class RequestLog:
    """A counting wrapper around the real app: records (method, path, range) of requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            range_ = headers.get(b"range")
            self.requests.append(
                (scope["method"], scope["path"], range_.decode("latin-1") if range_ else None)
            )
        await self.app(scope, receive, send)

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_part in p)


@dataclass
class RunningNode:
    url: str
    settings: Settings
    admin_token: str
    log: RequestLog
    port: int
    server: ServerThread
    runtime: Runtime  # the node's own parts, for what a test cannot do over HTTP

    def client(self, token: str | None = None) -> httpx.Client:
        """Follows redirects, as the Hub client and curl -L do: a node whose blobs are in S3
        answers downloads with a redirect to the bucket (httpx drops the token on the way)."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, follow_redirects=True)


def node_settings(data_dir: Path, **overrides: object) -> Settings:
    """A test node's settings: metadata and blobs where the test run says (TEST_DATABASE,
    TEST_BLOB_STORE) unless overridden; `blob_store=None` keeps its blobs in its data dir."""
    if TEST_DATABASE == "postgres":
        overrides.setdefault("database_url", postgres_database_for(data_dir, migrated=True))
    if TEST_BLOB_STORE == "s3" and "blob_store" not in overrides:  # a test's own store wins
        overrides["blob_store"], overrides["blob_store_endpoint"] = s3_blob_store_for(data_dir)
    # pydantic validates each override; mypy cannot type a **kwargs of mixed values.
    return Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, **overrides)  # type: ignore[arg-type]


_made_databases: set[str] = set()


def postgres_database_for(data_dir: Path, *, migrated: bool = False) -> str:
    """The node's database on the machine's PostgreSQL (127.0.0.1, user postgres): one per
    data dir, so a node restarted on its data dir finds its metadata again; made the first
    time this test run asks for it, empty or (`migrated`) with the newest schema."""
    import psycopg

    name = "myd_test_" + hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:20]
    if name not in _made_databases:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            template = f' TEMPLATE "{postgres_template()}"' if migrated else ""
            pg.execute(f'CREATE DATABASE "{name}"{template}')
        _made_databases.add(name)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


_made_buckets: set[str] = set()


def s3_blob_store_for(data_dir: Path) -> tuple[str, str]:
    """The node's blob store (URL, endpoint) on the blob server: a bucket per data dir, so a
    node restarted on its data dir finds its blobs again; made the first time it is asked for
    (moto starts empty with each test run)."""
    server = _blob_servers[0]
    name = "myd-" + hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:20]
    if name not in _made_buckets:
        boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=name)
        _made_buckets.add(name)
    return f"s3://{name}/store", server.url


# Peers probed and long-polled quickly, so state changes show within a second.
FAST_SYNC = {"long_poll": 1, "probe_interval": 0.2, "down_after": 3}


@contextmanager
def running_nodes(root: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes (uvicorn in a thread, each with its data dir under `root`); all are stopped
    when the block ends."""
    running: list[tuple[ServerThread, Runtime]] = []

    def start(name: str, port: int = 0, **overrides: object) -> RunningNode:
        settings = node_settings(root / name, node_id=name, **overrides)
        if settings.database_url is None:
            place_sqlite(settings.data_dir)  # at the newest schema already (tests/schemas.py)
        runtime = Runtime.open(settings)
        runtime.boot()
        log = RequestLog(runtime.app())
        server = ServerThread(log, port=port)
        try:
            server.start()
        except BaseException:
            runtime.close()
            raise
        running.append((server, runtime))
        return RunningNode(server.url, settings, ADMIN_TOKEN, log, server.port, server, runtime)

    try:
        yield start
    finally:
        for _, runtime in running:  # as `modelyard serve` stops: peers' long-polls answered,
            runtime.stopping()  # jobs halted, so no server waits out its grace for another node
        for server, runtime in running:
            server.stop()
            runtime.close()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes in this test's temporary directory; all are stopped at teardown."""
    with running_nodes(tmp_path) as start:
        yield start


@pytest.fixture
def node(start_node: Callable[..., RunningNode]) -> RunningNode:
    return start_node("node")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser is downloaded): a test opens pages
    with `browser.new_page()`."""
    chromium = require("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()
