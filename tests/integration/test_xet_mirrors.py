"""Files uploaded through Xet reach mirrors intact: an S3 bucket a repo is restored from with
no node alive, and a Hub (a second node) the stock client then downloads from. The bucket
holds such a file as its xorbs and a recipe, so a new version adds only its new xorbs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import boto3
import pytest

from mirror import download_repo
from mirror.s3_target import S3Bucket
from tests.conftest import RunningNode
from tests.integration.test_mirrors import FAST, add_mirror, wait_pushed
from tests.integration.test_xet import stock_client

logger = logging.getLogger(__name__)
EDITED_SIZE = 16 * 1024 * 1024


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
    assert not bucket.has_blob(blake3.blake3(weights).hexdigest())  # its xorbs and recipe
    download_repo("admin/xm@v1", tmp_path / "restored", [f"s3://{s3_bucket}/m"])
    assert (tmp_path / "restored" / "w.safetensors").read_bytes() == weights


def bucket_objects(bucket: str, prefix: str) -> dict[str, int]:
    """Every key under the mirror's prefix (relative to it) and its size in bytes."""
    s3 = boto3.client("s3")
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes |= {o["Key"].removeprefix(prefix): o["Size"] for o in page.get("Contents", [])}
    return sizes


def json_object(bucket: str, key: str) -> Any:
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def assert_stored_as_xorbs(objects: dict[str, int], s3_bucket: str, data: bytes) -> None:
    """The bucket holds the file as its recipe, xorbs (blobs) and their chunk indexes, and no
    blob of the whole file."""
    assert f"blobs/blake3/{b3(data)[:2]}/{b3(data)}" not in objects
    recipe = json_object(s3_bucket, f"x/xet/files/{b3(data)}.json")
    assert recipe["format"] == "modelyard.xet-file/1" and recipe["size"] == len(data)
    assert recipe["sha256"] == hashlib.sha256(data).hexdigest()
    assert recipe["xorbs"] and sum(t["length"] for t in recipe["terms"]) == len(data)
    for xorb in recipe["xorbs"]:
        hex_ = xorb["blake3"]
        assert objects[f"blobs/blake3/{hex_[:2]}/{hex_}"] == xorb["size"]
        assert f"xet/xorbs/{hex_}.json" in objects


@pytest.mark.slow
def test_a_xet_file_reaches_a_bucket_as_xorbs_and_a_new_version_adds_only_its_new_ones(
    start_node: Callable[..., RunningNode],
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    node = start_node("home", mirror=FAST)
    peer = start_node("peer")
    url = f"s3://{s3_bucket}/x"
    older = {"format": "modelyard.layout/1", "blobs": "blobs/blake3/{hex[:2]}/{hex}"}
    boto3.client("s3").put_object(  # a bucket written before Xet files were
        Bucket=s3_bucket, Key="x/modelyard.json", Body=json.dumps(older).encode()
    )
    assert add_mirror(node, name="bucket", kind="s3", url=url).status_code == 201
    added = add_mirror(node, name="peer", kind="node", url=peer.url, token=peer.admin_token)
    assert added.status_code == 201
    v1 = os.urandom(EDITED_SIZE)
    middle = EDITED_SIZE // 2
    v2 = v1[:middle] + os.urandom(1024) + v1[middle + 1024 :]
    (tmp_path / "v1.bin").write_bytes(v1)
    (tmp_path / "v2.bin").write_bytes(v2)

    def upload(name: str, tag: str) -> None:
        stock_client(
            tmp_path,
            node,
            f"""
            api.create_repo("admin/xv", exist_ok=True)
            api.upload_file(path_or_fileobj={str(tmp_path / name)!r},
                            path_in_repo="w.safetensors", repo_id="admin/xv")
            api.create_tag("admin/xv", tag={tag!r})
            """,
        )
        assert all(m["state"] == "ok" for m in wait_pushed(node, {"bucket", "peer"}))

    upload("v1.bin", "v1")
    before = bucket_objects(s3_bucket, "x/")
    assert json_object(s3_bucket, "x/modelyard.json")["xet"]["files"] == "xet/files/{blake3}.json"
    assert_stored_as_xorbs(before, s3_bucket, v1)

    upload("v2.bin", "v2")
    after = bucket_objects(s3_bucket, "x/")
    assert_stored_as_xorbs(after, s3_bucket, v2)
    grown = sum(after.values()) - sum(before.values())
    new_blobs = sum(
        size for key, size in after.items() if key.startswith("blobs/") and key not in before
    )
    logger.info("a 1 KiB edit grew the bucket by %d bytes (new xorbs %d)", grown, new_blobs)
    assert grown <= 0.05 * EDITED_SIZE, f"a 1 KiB edit added {grown} bytes to the bucket"

    with peer.client(peer.admin_token) as http:  # a node mirror gets whole blobs, as before
        for data in (v1, v2):
            assert http.get(f"/v1/blobs/{b3(data)}").content == data

    node.server.stop()
    peer.server.stop()
    for tag, data in (("v1", v1), ("v2", v2)):
        download_repo(f"admin/xv@{tag}", tmp_path / tag, [url])
        assert (tmp_path / tag / "w.safetensors").read_bytes() == data
    bucket = S3Bucket(url)
    file = bucket.resolve("model", "admin/xv", "v2").files[-1]
    assert file.path == "w.safetensors" and file.blake3 == b3(v2)
    for start, end in ((middle - 70_000, middle + 70_000), (5, 6), (EDITED_SIZE - 3, None)):
        assert b"".join(bucket.open(file, start, end)) == v2[start:end]
