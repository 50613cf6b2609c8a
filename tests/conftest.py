"""Shared fixtures: clean environment, a real node served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from registry.api.app import create_app
from registry.settings import Settings
from tests.s3 import s3_bucket, s3_server  # noqa: F401 - fixtures for every test module

ADMIN_TOKEN = "myd_test_admin_token"
# Which metadata backend nodes under test use: "sqlite" (default) or "postgres". Read once,
# before the autouse fixture below clears every MODELYARD_* variable from each test.
TEST_DATABASE = os.environ.get("MODELYARD_TEST_DATABASE", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    # huggingface_hub reads these at import time: no Xet, no telemetry, no user token file.
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_ETAG_TIMEOUT"] = "30"
    os.environ.pop("HF_TOKEN", None)
    os.environ.pop("HF_ENDPOINT", None)
    os.environ["HF_HOME"] = str(Path(config.rootpath) / ".pytest_cache" / "hf_home")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MODELYARD_"):
            monkeypatch.delenv(key)


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
                (scope["method"], scope["path"], range_.decode() if range_ else None)
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

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def node_settings(data_dir: Path, **overrides: object) -> Settings:
    if TEST_DATABASE == "postgres":
        overrides.setdefault("database_url", postgres_database_for(data_dir))
    # pydantic validates each override; mypy cannot type a **kwargs of mixed values.
    return Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, **overrides)  # type: ignore[arg-type]


_made_databases: set[str] = set()


def postgres_database_for(data_dir: Path) -> str:
    """The node's database on the machine's PostgreSQL (127.0.0.1, user postgres): one per
    data dir, so a node restarted on its data dir finds its metadata again; made empty the
    first time this test run asks for it."""
    import psycopg

    name = "myd_test_" + hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:20]
    if name not in _made_databases:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg.execute(f'CREATE DATABASE "{name}"')
        _made_databases.add(name)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


# Peers probed and long-polled quickly, so state changes show within a second.
FAST_SYNC = {"long_poll": 1, "probe_interval": 0.2, "down_after": 3}


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes (uvicorn in a thread, own data dir); all are stopped at teardown."""
    servers: list[ServerThread] = []

    def start(name: str, port: int = 0, **overrides: object) -> RunningNode:
        settings = node_settings(tmp_path / name, node_id=name, **overrides)
        log = RequestLog(create_app(settings))
        server = ServerThread(log, port=port)
        server.start()
        servers.append(server)
        return RunningNode(server.url, settings, ADMIN_TOKEN, log, server.port, server)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def node(start_node: Callable[..., RunningNode]) -> RunningNode:
    return start_node("node")
