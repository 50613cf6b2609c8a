"""A node as a separate `python -m registry serve` process, started, killed and restarted by PID.

The port and data dir stay the same across restarts, so a test can SIGKILL a node (no shutdown
code runs, as in a crash) and start it again on what the dead process left behind. Output goes
to a log file whose tail is shown when the node fails to come up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import httpx

from tests.ports import ADDRESS_IN_USE, free_port, listening
from tests.schemas import place_sqlite


def wait_for(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        time.sleep(interval)


class NodeProcess:
    """One `modelyard serve` process on 127.0.0.1, its data dir, port and admin token."""

    def __init__(
        self,
        data_dir: Path,
        token: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.token = token
        self.port = port or free_port()
        self._port_chosen = port is None  # another may be chosen if it was taken meanwhile
        self.log = log or data_dir.with_name(f"{data_dir.name}.log")
        self._env = {**os.environ, "MODELYARD_ADMIN_TOKEN": token, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> NodeProcess:
        """Start the process and return once it listens on its port and GET /v1/health answers
        200. A port this object chose that another process took meanwhile (tests run in
        parallel) is replaced by another, until the node has started once."""
        for _ in range(3 if self._port_chosen else 1):
            try:
                self._start(timeout)
            except RuntimeError as exc:
                if not (self._port_chosen and ADDRESS_IN_USE in str(exc).lower()):
                    raise
                self.port = free_port()
            else:
                self._port_chosen = False  # from now on it restarts where peers know it
                return self
        raise RuntimeError(f"no free port found for the node after 3 tries ({self.log})")

    def _start(self, timeout: float) -> None:
        assert not self.running, "already running"
        if "MODELYARD_DATABASE_URL" not in self._env:
            place_sqlite(self.data_dir)  # at the newest schema already (tests/schemas.py)
        command = [sys.executable, "-m", "registry", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(self._healthy, timeout, f"GET {self.url}/v1/health answers 200")
        except BaseException:
            self.kill()
            raise

    def _healthy(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"node exited with {self._proc.returncode}:\n{tail}")
        if not listening(self._proc.pid, self.port):  # an answer would come from another node
            return False
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL by PID and reap: a crash, no shutdown code runs."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM by PID (uvicorn shuts down gracefully); SIGKILL if it does not exit."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def interrupt(self, sig: signal.Signals, timeout: float = 15) -> int:
        """Send `sig` by PID and wait for the process to exit; return its exit code (it is
        killed, and the wait fails, if it does not exit within `timeout` seconds)."""
        assert self._proc is not None and self.running, "not running"
        os.kill(self._proc.pid, sig)
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def restart(self, timeout: float = 30) -> NodeProcess:
        self.stop()
        return self.start(timeout)

    def client(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        """An httpx client on the node, with the admin token unless another is given."""
        bearer = token or self.token
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {bearer}"}, timeout=timeout
        )

    def __enter__(self) -> NodeProcess:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def uploads_in_flight(node: NodeProcess) -> list[Path]:
    """Temp files of uploads in progress that already hold bytes."""
    found = []
    for path in (node.data_dir / "store" / "uploads").iterdir():
        try:
            if path.stat().st_size > 0:
                found.append(path)
        except FileNotFoundError:  # finished or aborted between listing and stat
            pass
    return found
