"""The stock client with its default settings (`hf_xet` installed, no HF_HUB_DISABLE_XET)
against a real node: uploads and downloads through the node's Xet CAS.

The test process itself imports huggingface_hub with Xet turned off (tests/conftest.py), so
each client step runs in a fresh Python process with the environment a new user has: its
own HF_HOME and Xet cache, and nothing that turns Xet off.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from tests.conftest import RunningNode
from tests.integration.test_federation_basic import wait_for


def client_env(tmp_path: Path, home: str) -> dict[str, str]:
    """A new user's environment: nothing that turns Xet off, a cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELYARD_"))}
    return env | {
        "HF_HOME": str(tmp_path / home),
        "HF_XET_CACHE": str(tmp_path / home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def stock_client(
    tmp_path: Path, node: RunningNode, code: str, *, home: str = "home", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `code` (with `api` an HfApi of the admin, `endpoint` and `token` set) in a new
    Python process with the stock client's defaults."""
    env = client_env(tmp_path, home)
    prelude = textwrap.dedent(
        f"""
        import json, sys
        from huggingface_hub import HfApi
        endpoint, token = {node.url!r}, {node.admin_token!r}
        api = HfApi(endpoint=endpoint, token=token)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def safetensors(values: int, metadata: dict[str, str] | None = None) -> bytes:
    """A valid .safetensors file of one float32 tensor with random values."""
    header: dict[str, object] = {
        "w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}
    }
    if metadata is not None:
        header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + os.urandom(4 * values)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "README.md").write_text("---\nlicense: mit\n---\n# Xet\n")
    (root / "config.json").write_text('{"dim": 8}')
    (root / "model.safetensors").write_bytes(safetensors(3 * 1024 * 1024 + 5))
    return root


def test_upload_folder_through_xet_then_download_through_xet_and_plain(
    node: RunningNode, tmp_path: Path, folder: Path
) -> None:
    weights = (folder / "model.safetensors").read_bytes()
    stock_client(
        tmp_path,
        node,
        f"""
        api.create_repo("admin/xet")
        api.upload_folder(folder_path={str(folder)!r}, repo_id="admin/xet")
        """,
    )
    assert node.log.count("POST", "/cas/v1/xorbs/") >= 1  # the big file went through Xet
    assert node.log.count("POST", "/cas/v1/shards") == 1
    assert node.log.count("PUT", "/lfs/objects/") == 0

    # The `hf` CLI, as a user types it.
    other = write_random(tmp_path / "other.bin", 3 * 1024 * 1024)
    hf = Path(sys.executable).parent / "hf"
    cli = subprocess.run(
        [str(hf), "upload", "admin/xet", str(tmp_path / "other.bin"), "other.bin"],
        env=client_env(tmp_path, "home-cli")
        | {"HF_ENDPOINT": node.url, "HF_TOKEN": node.admin_token},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert node.log.count("POST", "/cas/v1/shards") == 2
    with node.client() as http:
        assert http.get("/admin/xet/resolve/main/other.bin").content == other

    # The stock client downloads it through Xet (a reconstruction, then xorb ranges).
    out = stock_client(
        tmp_path,
        node,
        """
        from huggingface_hub import hf_hub_download
        path = hf_hub_download("admin/xet", "model.safetensors", endpoint=endpoint, token=token)
        print(path)
        """,
        home="home-download",
    )
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == weights
    assert (
        node.log.count("GET", "/cas/v1/reconstructions/")
        + node.log.count("GET", "/cas/v2/reconstructions/")
        >= 1
    )
    assert node.log.count("GET", "/cas/fetch/") >= 1

    # Any other client: plain /resolve, whole and by Range.
    with node.client(node.admin_token) as http:
        whole = http.get("/admin/xet/resolve/main/model.safetensors")
        assert whole.status_code == 200 and whole.content == weights
        part = http.get(
            "/admin/xet/resolve/main/model.safetensors", headers={"Range": "bytes=5000000-5999999"}
        )
        assert part.status_code == 206 and part.content == weights[5_000_000:6_000_000]
        head = http.head("/admin/xet/resolve/main/model.safetensors")
        assert head.headers["x-xet-hash"] and head.headers["x-linked-size"] == str(len(weights))
        info = http.get("/api/models/admin/xet", params={"blobs": "true"}).json()
        sibling = next(s for s in info["siblings"] if s["rfilename"] == "model.safetensors")
        assert sibling["lfs"]["sha256"] == hashlib.sha256(weights).hexdigest()
        assert sibling["size"] == len(weights)
        by_blake3 = http.get(f"/v1/blobs/{blake3.blake3(weights).hexdigest()}")
        assert by_blake3.status_code == 200 and by_blake3.content == weights
        sha256 = hashlib.sha256(weights).hexdigest()
        for value in (blake3.blake3(weights).hexdigest(), sha256, sha256[:10]):  # 10: AutoV2
            hits = http.get(f"/v1/files/by-hash/{value}").json()
            assert [(h["repo"], h["path"]) for h in hits] == [("admin/xet", "model.safetensors")]
        tree = http.get("/api/models/admin/xet/tree/main").json()
        entry = next(e for e in tree if e["path"] == "model.safetensors")
        assert entry["xetHash"] == head.headers["x-xet-hash"]

    def scanned() -> bool:
        with node.client(node.admin_token) as http:
            info = http.get("/api/models/admin/xet").json()
        return info["securityRepoStatus"]["scansDone"] is True

    # The modelyard client: parallel ranges from the node, each file checked by BLAKE3.
    pulled = subprocess.run(
        [
            str(Path(sys.executable).parent / "modelyard"),
            "pull",
            "admin/xet",
            "--to",
            str(tmp_path / "pulled"),
            "--source",
            node.url,
            "--token",
            node.admin_token,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (tmp_path / "pulled" / "model.safetensors").read_bytes() == weights

    wait_for(scanned, timeout=60)  # read back from its xorbs, like any blob
    with node.client(node.admin_token) as http:
        info = http.get("/api/models/admin/xet").json()
    assert info["safetensors"]["parameters"] == {"F32": 3 * 1024 * 1024 + 5}


def test_xet_turned_off_names_the_switch_in_what_the_user_sees(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = start_node("off", xet={"enabled": False})
    (tmp_path / "w.bin").write_bytes(os.urandom(100_000))
    done = stock_client(
        tmp_path,
        node,
        f"""
        api.create_repo("admin/off")
        api.upload_file(path_or_fileobj={str(tmp_path / "w.bin")!r}, path_in_repo="w.bin",
                        repo_id="admin/off")
        """,
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]  # hf_xet's one line: the status and the URL
    assert "HF_HUB_DISABLE_XET=1" in last, done.stderr[-3000:]


def test_token_routes_answer_json_and_headers(node: RunningNode) -> None:
    with node.client(node.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "tok"}).status_code == 200
        answer = http.get("/api/models/admin/tok/xet-write-token/main")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["casUrl"] == f"{node.url}/cas" == answer.headers["x-xet-cas-url"]
        assert body["accessToken"] == answer.headers["x-xet-access-token"]
        assert str(body["exp"]) == answer.headers["x-xet-token-expiration"]
        pr = http.get("/api/models/admin/tok/xet-write-token/None", params={"create_pr": "1"})
        assert pr.status_code == 200
    with node.client() as anonymous:
        assert anonymous.get("/api/models/admin/tok/xet-write-token/main").status_code == 401
        assert anonymous.get("/api/models/admin/tok/xet-read-token/main").status_code == 200
    with node.client(json.loads(json.dumps(body))["accessToken"]) as cas:
        # Whatever this CAS does not serve answers 404 (the client's cue), never 405.
        assert cas.post("/cas/v2/shards", content=b"x").status_code == 404
        assert cas.head(f"/cas/v1/xorbs/default/{'0' * 64}").status_code == 404
        assert cas.post(f"/cas/v1/xorb-grants/default/{'0' * 64}", json={}).status_code == 404


def test_a_pull_request_and_a_snapshot_through_xet(
    node: RunningNode, tmp_path: Path, folder: Path
) -> None:
    weights = (folder / "model.safetensors").read_bytes()
    out = stock_client(
        tmp_path,
        node,
        f"""
        api.create_repo("admin/pr")
        info = api.upload_file(path_or_fileobj={str(folder / "model.safetensors")!r},
                               path_in_repo="model.safetensors", repo_id="admin/pr",
                               create_pr=True)
        print(info.pr_revision)
        """,
    )
    pr_ref = out.stdout.strip().splitlines()[-1]
    assert pr_ref == "refs/pr/1" and node.log.count("POST", "/cas/v1/shards") == 1
    # snapshot_download lists the tree (xetHash) and asks the read token by commit itself.
    out = stock_client(
        tmp_path,
        node,
        f"""
        from huggingface_hub import snapshot_download
        print(snapshot_download("admin/pr", revision={pr_ref!r}, endpoint=endpoint, token=token))
        """,
        home="snapshot",
    )
    snapshot = Path(out.stdout.strip().splitlines()[-1])
    assert (snapshot / "model.safetensors").read_bytes() == weights
    assert node.log.count("GET", "/xet-read-token/") >= 1
