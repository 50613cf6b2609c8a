"""A node whose blobs live in S3 (`MODELYARD_BLOB_STORE`, moto's server on 127.0.0.1): uploads
land in the bucket, downloads are redirected to presigned URLs, the scanner and mirrors read
the blobs through temporary copies."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import boto3
import pytest
from huggingface_hub import HfApi, hf_hub_download

from registry.settings import Settings
from tests.conftest import FAST_SYNC, RunningNode
from tests.faultproxy import FaultProxy
from tests.integration.test_mirrors import FAST, add_mirror, wait_pushed
from tests.s3 import S3Server


def bucket_keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_a_node_on_s3_stores_serves_and_scans_through_the_bucket(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    node = start_node("s3node", blob_store=f"s3://{s3_bucket}/node", mirror=FAST)
    assert (
        add_mirror(node, name="copy", kind="s3", url=f"s3://{s3_bucket}/mirror").status_code == 201
    )
    api = HfApi(endpoint=node.url, token=node.admin_token)
    weights = os.urandom(21 * 1024 * 1024 + 3)  # more than one multipart part
    (tmp_path / "w.bin").write_bytes(weights)
    api.create_repo("admin/on-s3")
    api.upload_file(path_or_fileobj=tmp_path / "w.bin", path_in_repo="w.bin", repo_id="admin/on-s3")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="admin/on-s3")

    digest = blake3.blake3(weights).hexdigest()
    keys = bucket_keys(s3_bucket)
    assert f"node/blobs/blake3/{digest[:2]}/{digest}" in keys
    assert not [k for k in keys if "/uploads/" in k]
    assert not list((node.settings.data_dir / "store" / "blobs").rglob("*"))  # nothing local

    got = hf_hub_download("admin/on-s3", "w.bin", endpoint=node.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == weights
    with node.client(node.admin_token) as http:
        resolve = http.get("/admin/on-s3/resolve/main/w.bin", follow_redirects=False)
        assert resolve.status_code == 302 and resolve.headers["location"].startswith(
            os.environ["AWS_ENDPOINT_URL"]
        )
        ranged = http.get(f"/v1/blobs/{digest}", headers={"range": "bytes=5-9"})
        assert ranged.status_code == 206 and ranged.content == weights[5:10]

        deadline = time.monotonic() + 30
        scan = None
        while scan is None and time.monotonic() < deadline:
            head = http.head("/admin/on-s3/resolve/main/w.bin")
            scan = head.headers.get("x-modelyard-scan")
            time.sleep(0.2)
    assert scan is not None, "the scanner never read the blob from the bucket"

    wait_pushed(node, {"copy"})  # the outbox pushed from temporary copies of the blobs
    assert f"mirror/blobs/blake3/{digest[:2]}/{digest}" in bucket_keys(s3_bucket)


def test_blob_store_setting_must_be_an_s3_url(tmp_path: Path) -> None:
    for bad in ("/var/blobs", "s3://", "s3:///prefix", "http://bucket"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            Settings(data_dir=tmp_path, blob_store=bad)


def test_a_replica_copies_and_streams_blobs_from_a_home_on_s3(
    start_node: Callable[..., RunningNode], s3_bucket: str
) -> None:
    """The home answers its peers' blob GETs with redirects to its bucket, which they follow."""
    home = start_node("home", blob_store=f"s3://{s3_bucket}/home")
    api = HfApi(endpoint=home.url, token=home.admin_token)
    api.create_repo("admin/shared")
    eager_data, lazy_data = os.urandom(300_000), os.urandom(200_000)
    api.upload_file(path_or_fileobj=eager_data, path_in_repo="e.bin", repo_id="admin/shared")
    replicas = {}
    for blobs in ("eager", "lazy"):
        replicas[blobs] = replica = start_node(blobs, sync=FAST_SYNC)
        with replica.client(replica.admin_token) as http:
            body = {"url": home.url, "token": home.admin_token, "blobs": blobs}
            assert http.post("/v1/peers", json=body).status_code == 201
    api.upload_file(path_or_fileobj=lazy_data, path_in_repo="l.bin", repo_id="admin/shared")
    eager_digest = blake3.blake3(eager_data).hexdigest()
    with replicas["eager"].client() as http:
        deadline = time.monotonic() + 30
        while http.head(f"/v1/blobs/{eager_digest}").status_code != 200:
            assert time.monotonic() < deadline, "the eager replica never copied the blob"
            time.sleep(0.05)
        assert http.get(f"/v1/blobs/{eager_digest}").content == eager_data
    with replicas["lazy"].client() as http:
        deadline = time.monotonic() + 30
        while http.head("/admin/shared/resolve/main/l.bin").status_code != 200:
            assert time.monotonic() < deadline, "the lazy replica never learned of the file"
            time.sleep(0.05)
        assert http.get("/admin/shared/resolve/main/l.bin").content == lazy_data  # pulled through
    for replica in replicas.values():
        with replica.client(replica.admin_token) as http:
            [peer] = http.get("/v1/peers").json()
        assert peer["bad_blobs"] == 0, peer


def test_a_node_reaches_its_blob_store_through_its_own_endpoint(
    start_node: Callable[..., RunningNode], s3_bucket: str, s3_server: S3Server
) -> None:
    """MODELYARD_BLOB_STORE_ENDPOINT wins over boto3's AWS_ENDPOINT_URL (the S3 mirrors' one):
    here another way to the same moto server, a faithful proxy."""
    proxy = FaultProxy(s3_server.port)
    try:
        node = start_node("own", blob_store=f"s3://{s3_bucket}/own", blob_store_endpoint=proxy.url)
        api = HfApi(endpoint=node.url, token=node.admin_token)
        api.create_repo("admin/own")
        api.upload_file(path_or_fileobj=b"w" * 5000, path_in_repo="w.bin", repo_id="admin/own")
        digest = blake3.blake3(b"w" * 5000).hexdigest()
        assert f"own/blobs/blake3/{digest[:2]}/{digest}" in bucket_keys(s3_bucket)
        with node.client() as http:
            resolve = http.get("/admin/own/resolve/main/w.bin", follow_redirects=False)
            assert resolve.status_code == 302
            assert resolve.headers["location"].startswith(f"{proxy.url}/{s3_bucket}/own/blobs/")
            assert http.get("/admin/own/resolve/main/w.bin").content == b"w" * 5000
        node.server.stop()  # before its endpoint goes away
    finally:
        proxy.close()
