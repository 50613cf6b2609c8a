"""Files uploaded through Xet reach mirrors intact: an S3 bucket a repo is restored from with
no node alive, and a Hub (a second node) the stock client then downloads from."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from mirror import download_repo
from mirror.s3_target import S3Bucket
from tests.conftest import RunningNode
from tests.integration.test_mirrors import FAST, add_mirror, wait_pushed
from tests.integration.test_xet import stock_client


@pytest.mark.slow
def test_a_repo_uploaded_through_xet_is_restored_from_its_bucket_alone(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    hub = start_node("hub")
    node = start_node("home", mirror=FAST)
    assert add_mirror(node, name="bucket", kind="s3", url=f"s3://{s3_bucket}/m").status_code == 201
    added = add_mirror(node, name="hub", kind="hf", url=hub.url, token=hub.admin_token)
    assert added.status_code == 201
    weights = os.urandom(9 * 1024 * 1024 + 5)
    (tmp_path / "w.safetensors").write_bytes(weights)
    stock_client(
        tmp_path,
        node,
        f"""
        api.create_repo("admin/xm")
        api.upload_file(path_or_fileobj={str(tmp_path / "w.safetensors")!r},
                        path_in_repo="w.safetensors", repo_id="admin/xm")
        api.create_tag("admin/xm", tag="v1")
        """,
    )
    assert node.log.count("POST", "/cas/v1/shards") == 1  # it came in through Xet
    mirrors = wait_pushed(node, {"bucket", "hub"})
    assert all(m["state"] == "ok" for m in mirrors), mirrors

    out = stock_client(
        tmp_path,
        hub,
        """
        from huggingface_hub import hf_hub_download
        print(hf_hub_download("admin/xm", "w.safetensors", endpoint=endpoint, token=token))
        """,
        home="hub-download",
    )
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == weights

    hub.server.stop()
    node.server.stop()
    bucket = S3Bucket(f"s3://{s3_bucket}/m")
    manifest = bucket.resolve("model", "admin/xm", "v1")
    files = {f.path: f for f in manifest.files}
    assert files["w.safetensors"].blake3 == blake3.blake3(weights).hexdigest()
    assert files["w.safetensors"].sha256 == hashlib.sha256(weights).hexdigest()
    download_repo("admin/xm@v1", tmp_path / "restored", [f"s3://{s3_bucket}/m"])
    assert (tmp_path / "restored" / "w.safetensors").read_bytes() == weights
