"""`modelyard pull` names the files a node's scanner flagged; `--refuse-unsafe` skips them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from mirror import download_repo
from tests.conftest import RunningNode


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


EVIL = pickle.dumps(Exploit())
CLEAN = pickle.dumps({"state_dict": {"w": [0.1, 0.2]}})


@pytest.fixture
def scanned(start_node: Callable[..., RunningNode]) -> RunningNode:
    """A node holding admin/mixed (evil.ckpt, clean.bin), every scan finished."""
    node = start_node("scanner", scan={"interval": 0.1})
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/mixed")
    for name, data in (("evil.ckpt", EVIL), ("clean.bin", CLEAN)):
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id="admin/mixed")
    deadline = time.monotonic() + 30
    while not (api.model_info("admin/mixed").security_repo_status or {}).get("scansDone"):
        assert time.monotonic() < deadline, "scans never finished"
        time.sleep(0.05)
    return node


def pull(node: RunningNode, to: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "modelyard"), "pull", "admin/mixed"]
    command += ["--to", str(to), "--source", node.url, "--token", node.admin_token, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_pull_warns_of_unsafe_files_and_downloads_them(
    scanned: RunningNode, tmp_path: Path
) -> None:
    pulled = pull(scanned, tmp_path / "out")

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (tmp_path / "out" / "evil.ckpt").read_bytes() == EVIL
    assert (tmp_path / "out" / "clean.bin").read_bytes() == CLEAN
    warnings = [line for line in pulled.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, pulled.stderr[-3000:]
    assert warnings[0].startswith(f"warning: evil.ckpt is flagged unsafe by {scanned.url}: ")
    assert "posix.system" in warnings[0]


def test_pull_refuse_unsafe_skips_flagged_files_and_exits_7(
    scanned: RunningNode, tmp_path: Path
) -> None:
    pulled = pull(scanned, tmp_path / "out", "--refuse-unsafe")

    assert pulled.returncode == 7, pulled.stderr[-3000:]
    assert not (tmp_path / "out" / "evil.ckpt").exists()
    assert not any("evil" in p.name for p in (tmp_path / "out").rglob("*"))
    assert (tmp_path / "out" / "clean.bin").read_bytes() == CLEAN
    assert "warning: evil.ckpt is flagged unsafe" in pulled.stderr
    last = pulled.stderr.strip().splitlines()[-1]
    assert last == "error: refused 1 flagged file(s), not downloaded: evil.ckpt"


def test_download_repo_lists_flagged_files_and_refuses_them_when_asked(
    scanned: RunningNode, tmp_path: Path
) -> None:
    sources = [scanned.url]
    token = scanned.admin_token
    kept = download_repo("admin/mixed", tmp_path / "all", sources, token=token)
    refused = download_repo(
        "admin/mixed", tmp_path / "safe", sources, token=token, refuse_unsafe=True
    )

    assert kept.scan is not None and kept.scan.done and kept.scan.source == scanned.url
    assert set(kept.flagged) == {"evil.ckpt"} and kept.flagged["evil.ckpt"].status == "unsafe"
    assert kept.flagged["evil.ckpt"].findings == ("imports posix.system",)
    assert {"evil.ckpt", "clean.bin"} <= set(kept.files) and kept.refused == []
    assert refused.refused == ["evil.ckpt"]
    assert set(refused.files) == set(kept.files) - {"evil.ckpt"}
    assert not (tmp_path / "safe" / "evil.ckpt").exists()
