"""Replay catch-up for `bench/sync_lag.py --replay`: a home node with a log of many small
commits, and a fresh replica that pulls it from serial 0, on the embedded default or on
PostgreSQL (a fresh database per node, dropped at the end).

The log is written through the HF commit endpoint directly (one NDJSON POST per commit, two
threads), which builds thousands of entries in a fraction of the time huggingface_hub takes.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg

from tests.e2e.cluster import NodeProcess, wait_until

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
ENTRIES_PER_REPO = 10  # the 100,000-repo registry has ~5 entries a repo; small trees


@contextmanager
def database(backend: str) -> Iterator[dict[str, str]]:
    """The env a node needs for `backend`: nothing for sqlite, else a fresh Postgres database."""
    if backend == "sqlite":
        yield {}
        return
    name = f"myd_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"MODELYARD_DATABASE_URL": PG_URL.format(name=name)}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _commit(http: httpx.Client, repo: str, i: int) -> None:
    lines = [
        {"key": "header", "value": {"summary": f"c{i}", "description": ""}},
        {
            "key": "file",
            "value": {
                "path": f"{i}.txt",
                "content": base64.b64encode(f"y{i}".encode()).decode(),
                "encoding": "base64",
            },
        },
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = http.post(
        f"/api/models/{repo}/commit/main",
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )
    response.raise_for_status()


def build_log(home: NodeProcess, entries: int) -> int:
    """About `entries` entries on `home` (each commit is two: commit.add, ref.set), over one
    repo per ENTRIES_PER_REPO of them; returns its head serial."""
    repos = [f"admin/replay{r}" for r in range(max(1, entries // ENTRIES_PER_REPO))]
    with home.client() as http:
        for repo in repos:
            made = {"organization": "admin", "name": repo.split("/")[1], "type": "model"}
            http.post("/api/repos/create", json=made).raise_for_status()

    def write(part: int) -> None:
        with home.client() as http:
            for i in range(part, entries // 2, 2):
                _commit(http, repos[i % len(repos)], i)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, range(2)))
    with home.client() as http:
        return int(http.get("/v1/sync/changes", params={"since": 0, "limit": 1}).json()["head"])


def replay(root: Path, name: str, home: NodeProcess, total: int, env: dict[str, str]) -> float:
    """A fresh replica pulls `home`'s log from serial 0; entries/s from adding the peer to the
    cursor reaching the head (the first contact included)."""
    with ExitStack() as stack:
        replica = NodeProcess(root, name, env=env).start()
        stack.callback(replica.stop)
        started = time.perf_counter()
        replica.add_peer(home, blobs="lazy")  # metadata only: blob catch-up is measured apart
        wait_until(lambda: replica.peers()[0]["cursor"] >= total, 900, 0.01)
        return total / (time.perf_counter() - started)
