"""The node's own disk failing, with real node processes on a size-limited tmpfs: a full disk
gives one clear 507 and no debris, small writes go on, a read-only data dir is reported and
refused cleanly, and everything is back to normal once the fault clears, with no restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, wait_until
from tests.e2e.cluster import NodeProcess as ClusterNode
from tests.e2e.nodeproc import NodeProcess
from tests.requestcounts import answered_by_status
from tests.tools import require_mounts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MiB = 1024 * 1024
RESERVE = {"MODELYARD_LIMITS__DISK_RESERVE": "8MiB"}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 200 MiB tmpfs, unmounted (lazily: a killed node may hold it) at the end."""
    require_mounts()
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def node(tmpfs: Path, tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmpfs / "data", TOKEN, env=RESERVE, log=tmp_path / "node.log")
    yield proc.start()
    proc.kill()


def api(node: NodeProcess) -> HfApi:
    return HfApi(endpoint=node.url, token=TOKEN)


def leftovers(node: NodeProcess) -> list[Path]:
    """Partial uploads under the blob store's staging dir."""
    return list((node.data_dir / "store" / "uploads").iterdir())


def fill(disk: Path, leave: int, name: str = "ballast") -> Path:
    """A ballast file leaving about `leave` bytes free on the disk."""
    ballast = disk / name
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with ballast.open("wb") as f:
        f.truncate(0)
        block = b"\0" * MiB
        for _ in range(max(0, (free - leave) // MiB)):
            f.write(block)
    return ballast


def warnings(node: NodeProcess) -> list[str]:
    """The node's log lines at WARNING or above."""
    return [
        line
        for line in node.log.read_text().splitlines()
        if " WARNING " in line or " ERROR " in line
    ]


def gauge(scrape: str, name: str) -> float:
    """The value of an unlabelled metric in a /metrics text."""
    found = re.search(rf"^{name} (\S+)$", scrape, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def health(node: NodeProcess) -> dict[str, object]:
    return dict(httpx.get(f"{node.url}/v1/health", timeout=10).json())


def ready(node: NodeProcess) -> httpx.Response:
    return httpx.get(f"{node.url}/v1/health/ready", timeout=10)


def stock_upload(node: NodeProcess, tmp_path: Path, file: Path, *, xet: bool) -> dict[str, object]:
    """`upload_file` of `file` by the stock client at its defaults (Xet) or with
    HF_HUB_DISABLE_XET=1 (LFS), in a new process: its outcome (the status of the answer it
    gave up on, 200 when it succeeded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELYARD_"))}
    env |= {"HF_HOME": str(tmp_path / "client"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env |= {"HF_XET_CACHE": str(tmp_path / "client" / "xet")}
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    code = f"""
import json
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
api = HfApi(endpoint={node.url!r}, token={TOKEN!r})
try:
    api.upload_file(path_or_fileobj={str(file)!r}, path_in_repo="big.bin", repo_id="admin/big")
except HfHubHTTPError as exc:
    r = exc.response
    out = {{"status": r.status_code, "code": r.headers.get("x-error-code"), "url": str(r.url)}}
    print(json.dumps(out | {{"error": r.json()["error"]}}))
else:
    print(json.dumps({{"status": 200}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def server_errors(node: NodeProcess) -> float:
    """How many requests the node answered with a 5xx, by its own /metrics."""
    return answered_by_status(node.url)["5xx"]


@pytest.mark.parametrize("xet", [True, False], ids=["xet", "lfs"])
def test_an_upload_larger_than_the_free_space_is_one_507_and_works_once_space_is_freed(
    node: NodeProcess, tmpfs: Path, tmp_path: Path, xet: bool
) -> None:
    """The issue's scenario through the stock client, at its defaults (Xet) and over LFS:
    120 MB with about 80 MB free gives one 507, never a retried 500, and leaves no debris."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(120 * MiB))
    api(node).create_repo("admin/big")
    ballast = fill(tmpfs, 80 * MiB)
    refused = stock_upload(node, tmp_path, big, xet=xet)
    assert refused["status"] == 507, refused
    assert refused["code"] == "InsufficientStorage"
    assert "Not enough space" in str(refused["error"])
    assert str(node.data_dir / "store") in str(refused["error"])  # it names the disk
    assert "preupload" in str(refused["url"])  # refused before a byte of the file was sent
    assert server_errors(node) == 1  # that 507 alone: not retried, no 500 before it
    [line] = warnings(node)  # and one log line that says why
    assert "code=InsufficientStorage" in line and "Not enough space" in line
    assert leftovers(node) == []
    small = api(node).upload_file(
        path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id="admin/big"
    )
    assert small.oid
    ballast.unlink()  # space freed: the same upload goes through, with no restart
    assert stock_upload(node, tmp_path, big, xet=xet) == {"status": 200}
    scrape = httpx.get(f"{node.url}/metrics", timeout=10).text
    assert ('route="/cas/v1/xorbs/{prefix}/{xorb}"' in scrape) is xet  # the path it took
    path = hf_hub_download("admin/big", "big.bin", endpoint=node.url, cache_dir=tmp_path / "hub")
    assert Path(path).read_bytes() == big.read_bytes()
    assert api(node).model_info("admin/big").sha != small.oid  # committed after the small one
    assert leftovers(node) == []
    assert server_errors(node) == 1
    log = node.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("code=InsufficientStorage") == 1, log[-3000:]


def test_a_write_that_fills_the_disk_fails_507_and_leaves_nothing(
    node: NodeProcess, tmpfs: Path
) -> None:
    """A body of unknown length (no early refusal) runs into ENOSPC: one 507, its partial
    file removed at once, the disk reported full while it lasts, and back to normal."""
    api(node).create_repo("admin/fill")
    fill(tmpfs, 40 * MiB)
    chunk = os.urandom(MiB)

    def body() -> Iterator[bytes]:
        for _ in range(60):
            yield chunk

    with node.client() as http:
        answer = http.put(f"/v1/blobs/{'0' * 64}", content=body())
    assert answer.status_code == 507, answer.text
    assert answer.json()["code"] == "InsufficientStorage"
    assert "full" in answer.json()["error"]
    assert leftovers(node) == []  # removed at once, not at the next start
    sha = api(node).upload_file(path_or_fileobj=b"tiny", path_in_repo="t.txt", repo_id="admin/fill")
    assert sha.oid

    # Below the reserve: the node says it cannot take uploads, and a probe routes around it.
    (tmpfs / "ballast2").write_bytes(b"\0" * (os.statvfs(tmpfs).f_bavail * 4096 - 4 * MiB))
    now = health(node)
    assert now["disk"] == "full" and now["writable"] is False and now["status"] == "degraded"
    assert ready(node).status_code == 503
    with node.client() as http:
        scrape = http.get("/metrics").text
        status = http.get("/v1/status").json()
        page = http.get("/status").text
    assert 'modelyard_data_dir_state{state="full"} 1.0' in scrape
    assert gauge(scrape, "modelyard_data_dir_free_bytes") < 8 * MiB  # under the reserve
    assert gauge(scrape, "modelyard_data_dir_reserve_bytes") == 8 * MiB
    assert status["disk"]["state"] == "full"
    assert "is full" in page
    # Not one byte left: even the database cannot write. A commit is a clear 507, not a 500.
    with (tmpfs / "ballast3").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with node.client() as http:
        lines = [{"key": "header", "value": {"summary": "no room"}}]
        lines.append(
            {"key": "file", "value": {"path": "n.txt", "content": "eA==", "encoding": "base64"}}
        )
        payload = "\n".join(json.dumps(line) for line in lines)
        answer = http.post(
            "/api/models/admin/fill/commit/main",
            content=payload,
            headers={"content-type": "application/x-ndjson"},
        )
    assert answer.status_code == 507, answer.text
    assert answer.json()["code"] == "InsufficientStorage"
    (tmpfs / "ballast3").unlink()
    (tmpfs / "ballast2").unlink()
    wait_until(lambda: ready(node).status_code == 200, 10)
    assert health(node)["disk"] in ("ok", "low")
    # Low (under 10 % free) but above the reserve: said so, and uploads still taken.
    low = fill(tmpfs, 14 * MiB, "ballast-low")
    now = health(node)
    assert now["disk"] == "low" and now["writable"] is True, now
    assert ready(node).status_code == 200
    with node.client() as http:
        assert 'modelyard_data_dir_state{state="low"} 1.0' in http.get("/metrics").text
        assert http.get("/v1/status").json()["disk"]["state"] == "low"
        assert "is low" in http.get("/status").text
    low.unlink()
    assert health(node)["disk"] == "ok"
    again = api(node).upload_file(path_or_fileobj=b"x", path_in_repo="n.txt", repo_id="admin/fill")
    assert api(node).model_info("admin/fill").sha == again.oid
    log = node.log.read_text()
    assert "Traceback" not in log, log[-3000:]  # expected faults: one line each
    [put] = [line for line in warnings(node) if "path=/v1/blobs/" in line]
    assert "code=InsufficientStorage" in put and "is full" in put
    [commit] = [line for line in warnings(node) if "path=/api/models/admin/fill/commit" in line]
    assert "code=InsufficientStorage" in commit


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_a_read_only_blob_disk_is_reported_and_refused_until_it_is_writable_again(
    tmpfs: Path, tmp_path: Path
) -> None:
    """The blob store's disk goes read-only (what ext4 does on errors) under a running node."""
    store = tmpfs / "data" / "store"
    mount_tmpfs(store, "100m")
    node = NodeProcess(tmpfs / "data", TOKEN, env=RESERVE, log=tmp_path / "node.log")
    try:
        node.start()
        api(node).create_repo("admin/ro")
        api(node).upload_file(path_or_fileobj=b"before", path_in_repo="a.txt", repo_id="admin/ro")
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
        now = health(node)
        assert now["disk"] == "unwritable" and now["writable"] is False, now
        assert "not writable" in str(now["problems"])
        assert ready(node).status_code == 503
        with pytest.raises(HfHubHTTPError) as refused:
            api(node).upload_file(
                path_or_fileobj=os.urandom(2 * MiB), path_in_repo="b.bin", repo_id="admin/ro"
            )
        assert refused.value.response.status_code == 507  # not retried: an operator must act
        assert refused.value.response.headers["x-error-code"] == "DataDirUnavailable"
        assert "not writable" in refused.value.response.json()["error"]
        # Reads go on.
        path = hf_hub_download("admin/ro", "a.txt", endpoint=node.url, cache_dir=tmp_path / "h")
        assert Path(path).read_bytes() == b"before"
        subprocess.run(["mount", "-o", "remount,rw", str(store)], check=True)
        wait_until(lambda: ready(node).status_code == 200, 10)
        later = api(node).upload_file(
            path_or_fileobj=os.urandom(2 * MiB), path_in_repo="b.bin", repo_id="admin/ro"
        )
        assert api(node).model_info("admin/ro").sha == later.oid
        assert leftovers(node) == []
        log = node.log.read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        node.kill()
        subprocess.run(["umount", "-l", str(store)], check=False)


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB ext4 file system on a loop device, mounted errors=remount-ro: what a data
    disk does when the kernel finds an error. Unmounted (lazily: a killed node may hold it)
    at the end; the loop device is freed with it."""
    require_mounts()
    image, mount = tmp_path / "ext4.img", tmp_path / "ext4"
    with image.open("wb") as f:
        f.truncate(96 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mount.mkdir()
    options = "loop,errors=remount-ro"
    subprocess.run(["mount", "-o", options, str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fail_disk(mount: Path) -> None:
    """Make the kernel find an error on the ext4 file system at `mount`: it goes read-only
    at once, open files and all (a remount would refuse while the database is open)."""
    device = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(mount)], check=True, capture_output=True, text=True
    ).stdout.strip()
    Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("1")
    with pytest.raises(OSError, match="Read-only file system"):
        (mount / "probe").touch()


def test_a_data_dir_gone_read_only_is_reported_and_every_write_refused_cleanly(
    ext4: Path, tmp_path: Path
) -> None:
    """The whole data dir, database included, on a disk the kernel turned read-only under a
    running node: health, readiness, metrics and status say so; uploads and commits are
    refused with a code (never a 500, no traceback); reads go on. (Such a disk wants an fsck,
    which needs it unmounted: the node is stopped for that, so no recovery is awaited here.)"""
    node = NodeProcess(ext4 / "data", TOKEN, env=RESERVE, log=tmp_path / "node.log")
    try:
        node.start()
        api(node).create_repo("admin/rodir")
        api(node).upload_file(
            path_or_fileobj=b"before", path_in_repo="a.txt", repo_id="admin/rodir"
        )
        fail_disk(ext4)
        now = health(node)
        assert now["disk"] == "unwritable" and now["writable"] is False, now
        assert "not writable" in str(now["problems"])
        assert ready(node).status_code == 503
        with node.client() as http:
            scrape = http.get("/metrics").text
            assert 'modelyard_data_dir_state{state="unwritable"} 1.0' in scrape
            assert http.get("/v1/status").json()["disk"]["state"] == "unwritable"
        with pytest.raises(HfHubHTTPError) as refused:
            api(node).upload_file(
                path_or_fileobj=os.urandom(2 * MiB), path_in_repo="b.bin", repo_id="admin/rodir"
            )
        assert refused.value.response.status_code == 507
        assert refused.value.response.headers["x-error-code"] == "DataDirUnavailable"
        with pytest.raises(HfHubHTTPError) as commit:
            api(node).upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id="admin/rodir")
        assert commit.value.response.status_code in (503, 507), commit.value.response.text
        assert commit.value.response.headers["x-error-code"] in (
            "DataDirUnavailable",
            "DatabaseUnavailable",
        )
        path = hf_hub_download("admin/rodir", "a.txt", endpoint=node.url, cache_dir=tmp_path / "h")
        assert Path(path).read_bytes() == b"before"
        assert [c.commit_id for c in api(node).list_repo_commits("admin/rodir")][0] == (
            api(node).model_info("admin/rodir").sha
        )
        log = node.log.read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        node.kill()


def test_a_replica_whose_disk_cannot_hold_a_blob_fetches_it_once_space_is_freed(
    tmpfs: Path, tmp_path: Path
) -> None:
    """Eager replication onto a disk with too little room: the commit is shown at once (never
    hidden), the blob is not fetched and leaves no partial file, the log says why without
    repeating itself each pass, a download meanwhile is relayed from the home, and the blob
    arrives once space is freed, with no restart."""
    home = ClusterNode(tmp_path, "home").start()
    replica = ClusterNode(tmpfs, "replica", env=RESERVE)
    try:
        data = os.urandom(40 * MiB)
        digest = blake3.blake3(data).hexdigest()
        api_home = HfApi(endpoint=home.url, token=TOKEN)
        api_home.create_repo("admin/weights")
        api_home.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/weights")
        replica.start()
        ballast = fill(tmpfs, 30 * MiB)  # the reserve is 8 MiB: 40 MiB does not fit
        replica.add_peer(home)
        shown = HfApi(endpoint=replica.url, token=TOKEN)
        wait_until(lambda: "w.bin" in shown.list_repo_files("admin/weights"), 30)
        store = replica.data_dir / "store"
        blob = store / "blobs" / "blake3" / digest[:2] / digest
        others = blobs_in(home.data_dir / "store") - {digest}  # .gitattributes, say
        wait_until(lambda: blobs_in(store) == others, 30)
        for _ in range(25):  # a few sweeps for missing blobs (one a second here)
            assert not blob.exists()
            assert list((store / "uploads").iterdir()) == []
            time.sleep(0.2)
        log = replica_log(tmpfs)
        said = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
        assert len(said) == 1 and "wait until this node can store them" in said[0], said
        assert "Not enough space" in said[0] and "Traceback" not in log
        assert HfApi(endpoint=replica.url, token=TOKEN).model_info("admin/weights").sha
        # Downloaded meanwhile: relayed from the home, verified, not stored.
        path = hf_hub_download(
            "admin/weights", "w.bin", endpoint=replica.url, cache_dir=tmp_path / "hub"
        )
        assert Path(path).read_bytes() == data
        assert not blob.exists() and list((store / "uploads").iterdir()) == []
        ballast.unlink()
        wait_until(blob.exists, 60)
        assert blake3.blake3(blob.read_bytes()).hexdigest() == digest
        assert list((store / "uploads").iterdir()) == []
        wait_until(lambda: "blob fetches resume" in replica_log(tmpfs), 10)  # said after it
    finally:
        replica.kill()
        home.kill()
        shutil.copy(tmpfs / "replica.log", tmp_path)  # the tmpfs goes


def blobs_in(store: Path) -> set[str]:
    return {path.name for path in (store / "blobs" / "blake3").rglob("*") if path.is_file()}


def replica_log(root: Path) -> str:
    return (root / "replica.log").read_text()
