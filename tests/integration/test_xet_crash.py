"""SIGKILL of a node process in the middle of a Xet upload: what the node acknowledged is kept,
nothing half-done becomes visible, and the upload simply goes through when sent again.

The node runs as `python -m registry serve` (tests/e2e/nodeproc.py) on one data dir, port and
database throughout; it is killed by PID and started again on what it left behind. (a) The stock
client uploads through a proxy that holds its shard upload, so the kill lands after every xorb
was acknowledged and before the shard reached the node. (b) A shard of a 192 MiB file is sent
by hand, and the node is killed while it reads the file back to verify it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blake3
import httpx
import pytest
from sqlalchemy import text

from registry.domain.xet.types import XetHash
from registry.domain.xet.xorb import MAX_CHUNK_BYTES
from registry.metadata.db import Database
from registry.settings import Settings
from registry.storage.build import build_blob_store
from tests.conftest import ADMIN_TOKEN, node_settings
from tests.e2e.nodeproc import NodeProcess, wait_for
from tests.requestcounts import answered_by_status
from tests.xet_uploads import XetUpload, cas_token, commit, send_xorbs, xet_upload

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = "admin/crash"
MiB = 1024 * 1024


def noise(seed: bytes, size: int) -> bytes:
    """`size` bytes that do not compress (BLAKE3's output stream: fast, unlike `randbytes`)."""
    return blake3.blake3(seed).digest(size)


@dataclass
class Node:
    """A node process and the settings it runs on (to look at its database behind its back)."""

    process: NodeProcess
    settings: Settings

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, token: str | None = None) -> httpx.Client:
        return self.process.client(token, timeout=120)

    @contextmanager
    def database(self) -> Iterator[Database]:
        db = Database(self.settings.effective_database_url)
        try:
            yield db
        finally:
            db.dispose()

    def rows(self, table: str) -> int:
        with self.database() as db, db.engine.connect() as connection:
            return int(connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A node process on the test run's backends (SQLite or Postgres, local or S3), with a
    repo REPO; killed at teardown."""
    settings = node_settings(tmp_path / "node")
    env = {}
    for name in ("database_url", "blob_store", "blob_store_endpoint"):
        if getattr(settings, name):
            env[f"MODELYARD_{name.upper()}"] = str(getattr(settings, name))
    process = NodeProcess(settings.data_dir, ADMIN_TOKEN, env=env)
    process.start(timeout=60)
    running = Node(process, settings)
    try:
        with running.client() as http:
            assert http.post("/api/repos/create", json={"name": "crash"}).status_code == 200
        yield running
    finally:
        process.kill()


# -- (a) the stock client, killed between its xorbs and its shard ---------------------------


class ShardGate:
    """A loopback proxy in front of a node: forwards everything faithfully until a client sends
    `POST /cas/v1/shards`, then holds that request (the node never gets it whole) and sets
    `held`. It notes the xorbs uploaded through it on the way."""

    _MARK = b"POST /cas/v1/shards "
    _XORB = re.compile(rb"POST /cas/v1/xorbs/[^/ ]+/([0-9a-f]{64}) ")
    _TAIL = 256  # bytes kept from the last read: a request line may span two

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.held = threading.Event()
        self.xorbs: set[str] = set()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:  # the node is down (killed): this client gets nothing
                client.close()
                continue
            upstream.settimeout(None)
            self._open += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        tail = b""
        try:
            while data := client.recv(1 << 16):
                seen = tail + data
                self.xorbs.update(m.group(1).decode() for m in self._XORB.finditer(seen))
                at = seen.find(self._MARK)
                if at >= 0:
                    upstream.sendall(seen[len(tail) : max(at, len(tail))])
                    self.held.set()
                    return  # the shard request goes no further; its sockets stay open
                upstream.sendall(data)
                tail = seen[-self._TAIL :]
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def client_command(tmp_path: Path, endpoint: str, code: str, home: str) -> dict[str, object]:
    """Popen arguments running `code` (with `api`, `endpoint`, `token`) in a new Python with
    the stock client's defaults (Xet on), as tests/integration/test_xet.py's `stock_client`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELYARD_"))}
    env |= {
        "HF_HOME": str(tmp_path / home),
        "HF_XET_CACHE": str(tmp_path / home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    prelude = textwrap.dedent(
        f"""
        from huggingface_hub import HfApi
        endpoint, token = {endpoint!r}, {ADMIN_TOKEN!r}
        api = HfApi(endpoint=endpoint, token=token)
        """
    )
    return {"args": [sys.executable, "-c", prelude + textwrap.dedent(code)], "env": env}


def run_client(tmp_path: Path, endpoint: str, code: str, home: str) -> str:
    """Run the client to the end; its stdout."""
    done = subprocess.run(
        **client_command(tmp_path, endpoint, code, home),  # type: ignore[call-overload]  # Popen's keywords
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return str(done.stdout)


def served(node: Node, route: str, status: str) -> float:
    """POSTs to `route` the node process answered with `status` ("2xx") since it started."""
    return answered_by_status(node.url, route=route, method="POST")[status]


def upload_code(path: Path) -> str:
    return f"""
        info = api.upload_file(path_or_fileobj={str(path)!r}, path_in_repo="w.bin",
                               repo_id={REPO!r})
        print(info.oid)
        """


def test_kill_between_the_xorbs_and_the_shard_shows_nothing_and_the_retry_succeeds(
    tmp_path: Path, node: Node
) -> None:
    data = noise(b"a", 24 * MiB + 12345)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    gate = ShardGate(node.process.port)
    uploader = subprocess.Popen(
        **client_command(tmp_path, gate.url, upload_code(path), "home"),  # type: ignore[call-overload]  # Popen's keywords
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: gate.held.is_set() or uploader.poll() is not None, 120, "the shard")
        assert gate.held.is_set(), "the client ended without sending a shard"
        node.process.kill()  # every xorb acknowledged, the shard not received
    finally:
        uploader.kill()  # by PID: the user's upload failed; they run it again below
        uploader.wait(timeout=30)
        gate.close()
    assert gate.xorbs, "no xorb went through the proxy"

    node.process.start(timeout=60)
    with node.database() as db, db.read() as tx:
        for xorb in gate.xorbs:  # acknowledged, so kept
            record = tx.xet.xorb(XetHash.parse(xorb))
            assert record is not None, xorb
            assert tx.blobs.get(record.blake3) is not None
        assert tx.blobs.by_sha256(sha256) is None
    assert node.rows("xet_file") == 0
    with node.client() as http:
        assert http.head(f"/{REPO}/resolve/main/w.bin").status_code == 404
        tree = http.get(f"/api/models/{REPO}/tree/main").json()
        assert "w.bin" not in [e["path"] for e in tree]
        commits = http.get(f"/api/models/{REPO}/commits/main").json()
        assert len(commits) == 1  # the repo's first commit only

    # The retry, from the same machine (home and Xet cache), straight to the node: the xorbs
    # are granted as stored (200), so only the shard goes up this time.
    commit_id = run_client(tmp_path, node.url, upload_code(path), "home").split()[-1]
    assert node.rows("xet_file") == 1
    assert served(node, "/cas/v1/xorb-grants/{prefix}/{xorb}", "2xx") == len(gate.xorbs)
    assert served(node, "/cas/v1/xorbs/{prefix}/{xorb}", "2xx") == 0
    assert served(node, "/cas/v1/shards", "2xx") == 1
    out = run_client(
        tmp_path,
        node.url,
        f"""
        from huggingface_hub import hf_hub_download
        print(hf_hub_download({REPO!r}, "w.bin", revision={commit_id!r}, endpoint=endpoint,
                              token=token))
        """,
        "home-download",
    )
    assert Path(out.split()[-1]).read_bytes() == data
    with node.client() as http:
        head = http.head(f"/{REPO}/resolve/main/w.bin")
        assert head.status_code == 200 and head.headers.get("x-xet-hash"), head.headers
        plain = http.get(f"/{REPO}/resolve/main/w.bin", follow_redirects=True)
        assert plain.status_code == 200 and plain.content == data


# -- (b) killed while it verifies a shard ---------------------------------------------------


def progress(pid: int) -> tuple[int, float]:
    """Bytes the process has read through read(2) and friends, and its CPU seconds."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines() if line)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(io["rchar"]), (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def post_shard_in_thread(node: Node, token: str, shard: bytes, outcome: list[object]) -> None:
    try:
        with node.client(token) as http:
            outcome.append(http.post("/cas/v1/shards", content=shard))
    except httpx.TransportError as exc:  # the node died under it: what this test expects
        outcome.append(exc)


def assert_registered(node: Node, upload: XetUpload, *, registered: bool) -> None:
    with node.database() as db, db.read() as tx:
        assert (tx.xet.file(upload.file.file_hash) is not None) is registered
        assert (tx.blobs.get(upload.blake3) is not None) is registered
        assert (tx.blobs.by_sha256(upload.sha256) is not None) is registered
        for name, _ in upload.xorbs:
            assert tx.xet.xorb(name) is not None


def stored_sha256(node: Node, path: str) -> str:
    sha = hashlib.sha256()
    with (
        node.client() as http,
        http.stream("GET", f"/{REPO}/resolve/main/{path}", follow_redirects=True) as answer,
    ):
        assert answer.status_code == 200
        for piece in answer.iter_bytes():
            sha.update(piece)
    return sha.hexdigest()


def test_kill_while_verifying_a_shard_registers_nothing_and_the_shard_is_taken_again(
    node: Node,
) -> None:
    # 192 MiB that do not compress, in 6 xorbs of 256 chunks of 128 KiB.
    data = noise(b"b", 192 * MiB)
    upload = xet_upload(data, chunk=MAX_CHUNK_BYTES, per_xorb=256)
    assert len(upload.xorbs) == 6
    with node.client() as http:
        token = cas_token(http, REPO)
    with node.client(token) as http:
        send_xorbs(http, upload)

    pid = node.process.pid
    assert pid is not None
    read_before, cpu_before = progress(pid)

    def verifying() -> bool:
        """The node reads the xorbs back (local store: read(2) bytes; S3: CPU time)."""
        read, cpu = progress(pid)
        return read - read_before > 16 * MiB or cpu - cpu_before > 0.25

    outcome: list[object] = []
    sender = threading.Thread(
        target=post_shard_in_thread, args=(node, token, upload.shard(), outcome)
    )
    sender.start()
    try:
        wait_for(lambda: verifying() or outcome, 60, "the node verifying the shard", 0.002)
    finally:
        node.process.kill()
        sender.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError), (
        f"the kill did not land while the shard was verified: {outcome}"
    )

    node.process.start(timeout=60)
    assert_registered(node, upload, registered=False)
    assert node.rows("xet_file") == 0
    with node.client(token) as http:
        answer = http.post("/cas/v1/shards", content=upload.shard())
        assert answer.status_code == 200 and answer.json() == {"result": 1}, answer.text

    # Acknowledged now: a kill right after loses nothing.
    node.process.kill()
    node.process.start(timeout=60)
    assert_registered(node, upload, registered=True)
    with node.client() as http:
        assert commit(http, REPO, "w.bin", upload).status_code == 200
    assert stored_sha256(node, "w.bin") == upload.sha256
    with node.database() as db, db.read() as tx:
        record = tx.xet.file(upload.file.file_hash)
        assert record is not None and record.blake3 == upload.blake3
        # Stored once, as chunks in its xorbs: the blob store holds no copy of its own.
        assert record.blake3 not in set(build_blob_store(node.settings).iter_digests())
