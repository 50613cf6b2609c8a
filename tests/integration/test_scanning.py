"""Safety scanning: verdicts arrive in the background; files are flagged, never hidden."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import ADMIN_TOKEN, RunningNode


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


EVIL = pickle.dumps(Exploit())
CLEAN = pickle.dumps({"state_dict": {"w": [0.1, 0.2]}})
FORGED = struct.pack("<Q", 2**60) + b"{}"


def upload_all(node: RunningNode) -> HfApi:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/scanned")
    for name, data in (
        ("evil.ckpt", EVIL),
        ("clean.pt", CLEAN),
        ("forged.safetensors", FORGED),
        ("notes.txt", b"not scanned"),
    ):
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id="admin/scanned")
    return api


def scan_header(node: RunningNode, path: str) -> str | None:
    with node.client() as http:
        response = http.head(f"/admin/scanned/resolve/main/{path}")
    value = response.headers.get("X-Modelyard-Scan")
    return str(value) if value is not None else None


def test_unsafe_files_are_flagged_in_model_info_and_headers(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = start_node("scanner", scan={"interval": 0.1})
    api = upload_all(node)
    deadline = time.monotonic() + 30
    while not (status := api.model_info("admin/scanned").security_repo_status or {}).get(
        "scansDone"
    ):
        assert time.monotonic() < deadline, "scans never finished"
        time.sleep(0.05)
    issues = {f["path"]: f for f in status["filesWithIssues"]}
    assert set(issues) == {"evil.ckpt", "forged.safetensors"}
    assert issues["evil.ckpt"]["status"] == "unsafe"
    assert any("system" in finding for finding in issues["evil.ckpt"]["findings"])
    assert "invalid safetensors" in issues["forged.safetensors"]["findings"][0]
    assert scan_header(node, "evil.ckpt") == "unsafe"
    assert scan_header(node, "clean.pt") == "clean"
    assert scan_header(node, "notes.txt") is None
    local = hf_hub_download(
        "admin/scanned", "evil.ckpt", cache_dir=tmp_path / "c", endpoint=node.url
    )
    assert Path(local).read_bytes() == EVIL  # flagged, never hidden


def test_with_the_scanner_stopped_uploads_are_visible_and_pending(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("no-scanner", scan={"enabled": False})
    api = upload_all(node)
    info = api.model_info("admin/scanned")
    assert {s.rfilename for s in info.siblings or []} >= {"evil.ckpt", "clean.pt"}
    assert info.security_repo_status == {"scansDone": False, "filesWithIssues": []}
    assert scan_header(node, "evil.ckpt") == "pending"


def test_a_bin_of_other_data_is_clean_without_warnings_and_a_pickled_bin_is_still_scanned(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    node = start_node("bins", scan={"enabled": False})  # this test runs the scanner
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/scanned")
    raw = struct.pack("<4f", 0.5, 0.25, 1.0, 2.0) * 64  # tensor bytes: no opcode starts them
    for name, data in (("tokens.bin", raw), ("pytorch_model.bin", EVIL)):
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id="admin/scanned")
    caplog.set_level(logging.WARNING)
    assert node.runtime.scans.run_once() == 2
    assert scan_header(node, "tokens.bin") == "clean"
    assert scan_header(node, "pytorch_model.bin") == "unsafe"  # a pickle: scanned as one
    warned = [f"{r.name}: {r.getMessage()}" for r in caplog.records]
    assert warned and all("pytorch_model.bin" in w for w in warned), warned  # none of tokens
