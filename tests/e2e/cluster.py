"""Nodes as separate `modelyard serve` processes, each with its own data dir and port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.ports import ADDRESS_IN_USE, free_port, listening

TOKEN = "myd_e2e_admin_token"


class NodeProcess:
    def __init__(
        self,
        root: Path,
        name: str,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        node_id: str | None = None,
    ) -> None:
        self.name = name
        self.node_id = node_id or name  # processes of one node share its id
        self.data_dir = root / name
        self.port = port or free_port()
        self._port_chosen = port is None  # another may be chosen if it was taken meanwhile
        self._env = {
            **os.environ,
            "MODELYARD_ADMIN_TOKEN": TOKEN,
            "MODELYARD_SYNC__LONG_POLL": "5",
            "MODELYARD_SYNC__PROBE_INTERVAL": "0.5",
            "MODELYARD_SYNC__BACKFILL_INTERVAL": "1",
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = root / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> NodeProcess:
        """Start the process; return once it listens on its port and is healthy. A port this
        object chose that another process took meanwhile (tests run in parallel) is replaced by
        another, until the node has started once (then peers know it by its URL)."""
        for _ in range(3 if self._port_chosen else 1):
            try:
                self._start(timeout)
            except RuntimeError as exc:
                if not (self._port_chosen and ADDRESS_IN_USE in str(exc).lower()):
                    raise
                self.port = free_port()
            else:
                self._port_chosen = False
                return self
        raise RuntimeError(f"{self.name}: no free port found after 3 tries")

    def _start(self, timeout: float) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "registry",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--node-id",
                    self.node_id,
                ],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self._log.read_text()[-2000:]}")
            try:  # only once it listens: an answer before would come from another node
                if (
                    listening(self._proc.pid, self.port)
                    and httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy")

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def add_peer(
        self, other: NodeProcess | str, blobs: str = "eager", token: str | None = TOKEN
    ) -> str:
        url = other if isinstance(other, str) else other.url
        with self.client() as http:
            response = http.post("/v1/peers", json={"url": url, "token": token, "blobs": blobs})
        response.raise_for_status()
        return str(response.json()["id"])

    def peers(self) -> list[dict[str, Any]]:
        with self.client() as http:
            return list(http.get("/v1/peers").json())


def wait_until(check: object, timeout: float = 30, interval: float = 0.05) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {check}")
        time.sleep(interval)
