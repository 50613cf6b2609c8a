"""AutoV3, AutoV1 and kohya's hashes of safetensors files: made in the background on the node
that holds the bytes (uploads, eager replicas, pull-through), and looked up by-hash."""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from huggingface_hub import HfApi, hf_hub_download

from registry.domain.digest import Digest
from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.safetensors_files import addnet_hash, legacy_hash, safetensors_file

FAST = {"interval": 0.05}


def found(node: RunningNode, value: str, timeout: float = 20) -> list[dict[str, Any]]:
    """The by-hash hits for `value` once there are any (the job hashes in the background)."""
    deadline = time.monotonic() + timeout
    with node.client(ADMIN_TOKEN) as http:
        while True:
            response = http.get(f"/v1/files/by-hash/{value}")
            assert response.status_code == 200, response.text
            if response.json() or time.monotonic() > deadline:
                return list(response.json())
            time.sleep(0.05)


def lookup(node: RunningNode, value: str) -> list[dict[str, Any]]:
    with node.client(ADMIN_TOKEN) as http:
        response = http.get(f"/v1/files/by-hash/{value}")
    assert response.status_code == 200, response.text
    return list(response.json())


def publish(node: RunningNode, repo: str, files: dict[str, bytes]) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo(repo, exist_ok=True)
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)


def test_uploaded_safetensors_files_are_found_by_the_hashes_tools_write(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", hashes=FAST)
    claims = {"sshs_model_hash": "f" * 64, "sshs_legacy_hash": "abcdef01", "ss_network_dim": "4"}
    lora = safetensors_file({"up": 0x90000, "down": 0x90000}, claims)  # past AutoV1's window
    other = safetensors_file({"w": 3000})  # valid bytes, but not named .safetensors
    forged = struct.pack("<Q", 1 << 40) + b"{}" + b"\0" * 100  # a header longer than the file
    publish(
        node,
        "admin/lora",
        {"style.safetensors": lora, "w.bin": other, "bad.safetensors": forged},
    )
    tail, autov1 = addnet_hash(lora), legacy_hash(lora)
    assert tail != claims["sshs_model_hash"]  # the claim is recorded, never trusted

    hits = found(node, tail[:12])
    assert [(h["path"], h["autov3"], h["autov1"]) for h in hits] == [
        ("style.safetensors", tail[:12], autov1)
    ]
    for form in (tail[:12].upper(), f"autov3:{tail[:12]}", f"AutoV3:{tail[:12].upper()}"):
        assert lookup(node, form) == hits, form
    for form in (autov1, autov1.upper(), f"autov1:{autov1}", tail, tail.upper()):
        assert lookup(node, form) == hits, form
    assert lookup(node, hashlib.sha256(lora).hexdigest()) == hits  # the old forms say more now
    assert lookup(node, claims["sshs_model_hash"]) == []  # a claim names no file

    # The other files are done with: the .bin has no hashes, the forged file is recorded as
    # having none (and is not read again).
    service = node.runtime.model_hashes
    assert service.pending() == []
    bin_hits = lookup(node, hashlib.sha256(other).hexdigest())
    assert [(h["path"], h["autov3"], h["autov1"]) for h in bin_hits] == [("w.bin", None, None)]
    assert lookup(node, addnet_hash(other)) == []
    problem = service.problem(Digest(blake3.blake3(forged).hexdigest()))
    assert problem is not None and "Header length" in problem
    assert lookup(node, hashlib.sha256(forged).hexdigest())[0]["autov3"] is None
    assert service.run_once() == 0


def test_malformed_hashes_are_refused_with_a_code(node: RunningNode) -> None:
    with node.client() as http:
        for bad in ("autov3:0123abcd", "autov1:0123456789ab", "0123456789a", "autov4:01234567"):
            response = http.get(f"/v1/files/by-hash/{bad}")
            assert response.status_code == 400, bad
            assert response.headers["X-Error-Code"] == "BadRequest"
            assert "AutoV3" in response.json()["error"]


def test_a_node_restarted_midway_fills_every_file(
    start_node: Callable[..., RunningNode],
) -> None:
    files = {f"m{i}.SafeTensors": safetensors_file({"w": 2000 + i}) for i in range(4)}
    manual = start_node("n", hashes={"enabled": False, "batch": 1})
    publish(manual, "admin/many", files)
    assert manual.runtime.model_hashes.run_once() == 1  # one done by hand, then a stop
    first = [p for p, d in files.items() if lookup(manual, addnet_hash(d)[:12])]
    assert len(first) == 1
    manual.server.stop()

    node = start_node("n", hashes=FAST)
    for path, data in files.items():
        hits = found(node, f"autov3:{addnet_hash(data)[:12]}")
        assert [(h["path"], h["autov1"]) for h in hits] == [(path, legacy_hash(data))]
    assert node.runtime.model_hashes.pending() == []


@pytest.mark.parametrize("blobs", ["eager", "lazy"])
def test_a_replica_hashes_the_bytes_it_holds_and_answers_alike(
    start_node: Callable[..., RunningNode], tmp_path: Path, blobs: str
) -> None:
    home = start_node("home", hashes=FAST)
    replica = start_node("replica", hashes=FAST, sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": home.url, "token": ADMIN_TOKEN, "blobs": blobs})
    assert added.status_code == 201, added.text
    lora = safetensors_file({"a": 5000, "b": 7000}, {"sshs_model_hash": "0" * 64})
    publish(home, "admin/shared", {"lora.safetensors": lora})
    autov3 = addnet_hash(lora)[:12]
    on_home = found(home, autov3)
    if blobs == "lazy":  # no bytes here until someone downloads them: nothing to hash
        found(replica, hashlib.sha256(lora).hexdigest())  # the commit has arrived
        assert lookup(replica, autov3) == []
        hf_hub_download(
            "admin/shared", "lora.safetensors", cache_dir=tmp_path / "c", endpoint=replica.url
        )
    on_replica = found(replica, autov3)
    assert on_replica == on_home and on_home[0]["autov1"] == legacy_hash(lora)
    assert lookup(replica, f"autov1:{legacy_hash(lora)}") == on_home
