"""The stock huggingface_hub client against a real node: publish, browse and download."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError

from tests.conftest import RunningNode
from tests.faultproxy import Fault, FaultProxy

BIG = 55 * 1024 * 1024


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(size % (1 << 20)))


def make_model_folder(root: Path, big_size: int = BIG) -> Path:
    folder = root / "model"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [lora]\n---\n# My LoRA\n")
    (folder / "config.json").write_text('{"dim": 64, "alpha": 32}')
    (folder / "nested" / "tokenizer.json").write_text('{"vocab": ["a", "b"]}')
    (folder / "nested" / "deeper" / "notes.txt").write_text("deep")
    (folder / "nested" / "spaces and ünïcödé ñame.txt").write_text("grüße")
    write_random(folder / "weights.safetensors", big_size)
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


@pytest.mark.slow
def test_upload_folder_then_download_by_branch_tag_and_sha(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    folder = make_model_folder(tmp_path)
    api.create_repo("admin/lora")
    info = api.upload_folder(folder_path=folder, repo_id="admin/lora", commit_message="v1")
    sha = info.oid
    api.create_tag("admin/lora", tag="v1.0", revision=sha)
    assert node.log.count("PUT", "/lfs/objects/") == 1  # the big file went through LFS
    for revision in ("main", "v1.0", sha):
        cache = tmp_path / f"cache-{revision}"
        for path, data in files_of(folder).items():
            local = hf_hub_download(
                "admin/lora",
                path,
                revision=revision,
                cache_dir=cache,
                endpoint=node.url,
                token=node.admin_token,
            )
            assert Path(local).read_bytes() == data, (revision, path)


def test_snapshot_download_with_allow_patterns_into_local_dir(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    folder = make_model_folder(tmp_path, big_size=1024)
    api.create_repo("admin/snap")
    api.upload_folder(folder_path=folder, repo_id="admin/snap")
    target = tmp_path / "out"
    snapshot_download(
        "admin/snap",
        local_dir=target,
        allow_patterns=["*.json", "nested/*"],
        endpoint=node.url,
        token=node.admin_token,
        cache_dir=tmp_path / "c",
    )
    got = {
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    assert got == {
        "config.json",
        "nested/tokenizer.json",
        "nested/deeper/notes.txt",
        "nested/spaces and ünïcödé ñame.txt",
    }
    assert (target / "nested" / "spaces and ünïcödé ñame.txt").read_text() == "grüße"


def test_download_second_time_served_from_client_cache(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    api.create_repo("admin/cached")
    api.upload_file(path_or_fileobj=b"x" * 5000, path_in_repo="w.bin", repo_id="admin/cached")
    for _ in range(2):
        hf_hub_download("admin/cached", "w.bin", cache_dir=tmp_path / "c", endpoint=node.url)
    assert node.log.count("GET", "/admin/cached/resolve/") == 1
    assert node.log.count("HEAD", "/admin/cached/resolve/") == 2


@pytest.mark.slow
def test_download_interrupted_mid_stream_resumes_with_range(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    # Blobs on the local disk whatever the run's blob store: the bytes must flow through the
    # fault proxy in front of the node, and a node on S3 redirects downloads around it.
    node = start_node("node", blob_store=None)
    api = HfApi(endpoint=node.url, token=node.admin_token)
    data_path = tmp_path / "w.safetensors"
    write_random(data_path, 30 * 1024 * 1024)
    api.create_repo("admin/resume")
    api.upload_file(path_or_fileobj=data_path, path_in_repo="w.safetensors", repo_id="admin/resume")
    proxy = FaultProxy(node.port)
    try:
        # The client writes in 10 MiB chunks: cut after the first one reached the disk.
        proxy.inject(Fault(cut_after=15 * 1024 * 1024, times=1))
        local = hf_hub_download(
            "admin/resume", "w.safetensors", cache_dir=tmp_path / "c", endpoint=proxy.url
        )
    finally:
        proxy.close()
    assert proxy.faults_applied == 1
    assert (
        hashlib.sha256(Path(local).read_bytes()).digest()
        == hashlib.sha256(data_path.read_bytes()).digest()
    )
    ranged = [r for m, p, r in node.log.requests if m == "GET" and "/resolve/" in p and r]
    assert ranged and ranged[0].startswith("bytes=") and not ranged[0].startswith("bytes=0-")


def test_model_info_files_metadata_sizes_and_sha256(api: HfApi, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path, big_size=300_000)
    api.create_repo("admin/meta")
    api.upload_folder(folder_path=folder, repo_id="admin/meta")
    info = api.model_info("admin/meta", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    for path, data in files_of(folder).items():
        assert siblings[path].size == len(data)
    weights = siblings["weights.safetensors"]
    assert weights.lfs is not None
    assert (
        weights.lfs.sha256
        == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    )
    assert siblings["config.json"].lfs is None
    assert ".gitattributes" in siblings  # the initial commit's file


def test_list_models_by_search_and_author(node: RunningNode, api: HfApi) -> None:
    for name in ("sdxl-turbo-merge", "pony-lora", "flux-vae"):
        api.create_repo(f"admin/{name}")
    assert [m.id for m in api.list_models(search="LORA")] == ["admin/pony-lora"]
    assert {m.id for m in api.list_models(author="admin")} == {
        "admin/sdxl-turbo-merge",
        "admin/pony-lora",
        "admin/flux-vae",
    }
    assert list(api.list_models(author="nobody")) == []
    assert len(list(api.list_models(author="admin", limit=2))) == 2
    assert node.log.count("GET", "/api/models") >= 3


def test_refs_commits_tree_and_paths_info(api: HfApi, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path, big_size=2048)
    api.create_repo("admin/browse")
    first = api.upload_folder(
        folder_path=folder, repo_id="admin/browse", commit_message="first upload"
    ).oid
    second = api.upload_file(
        path_or_fileobj=b"v2",
        path_in_repo="config.json",
        repo_id="admin/browse",
        commit_message="bump config",
    ).oid
    commits = api.list_repo_commits("admin/browse")
    assert [c.commit_id for c in commits[:2]] == [second, first]
    assert [c.title for c in commits] == ["bump config", "first upload", "initial commit"]
    refs = api.list_repo_refs("admin/browse")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", second)]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("admin/browse")}
    assert top["nested"] == "RepoFolder" and top["config.json"] == "RepoFile"
    assert "nested/tokenizer.json" not in top
    deep = [
        e.path for e in api.list_repo_tree("admin/browse", path_in_repo="nested", recursive=True)
    ]
    assert "nested/deeper" in deep and "nested/deeper/notes.txt" in deep
    expanded = {e.path: e for e in api.list_repo_tree("admin/browse", expand=True)}
    last = {path: getattr(e, "last_commit", None) for path, e in expanded.items()}
    assert last["config.json"] is not None and last["config.json"].oid == second
    assert last["README.md"] is not None and last["README.md"].oid == first
    infos = api.get_paths_info("admin/browse", ["config.json", "nested", "missing.txt"])
    assert sorted(i.path for i in infos) == ["config.json", "nested"]


def test_branch_upload_then_tag_and_short_sha(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    api.create_repo("admin/branches")
    api.create_branch("admin/branches", branch="dev/x")
    sha = api.upload_file(
        path_or_fileobj=b"on dev",
        path_in_repo="dev.txt",
        repo_id="admin/branches",
        revision="dev/x",
    ).oid
    api.create_tag("admin/branches", tag="dev-1", revision="dev/x")
    refs = api.list_repo_refs("admin/branches")
    assert {b.name for b in refs.branches} == {"main", "dev/x"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("dev-1", sha)]
    for revision in ("dev/x", "dev-1", sha[:7]):
        local = hf_hub_download(
            "admin/branches",
            "dev.txt",
            revision=revision,
            cache_dir=tmp_path / revision.replace("/", "_"),
            endpoint=node.url,
        )
        assert Path(local).read_bytes() == b"on dev"
    assert not api.file_exists("admin/branches", "dev.txt")  # main is untouched
    api.delete_branch("admin/branches", branch="dev/x")
    api.delete_tag("admin/branches", tag="dev-1")
    assert [b.name for b in api.list_repo_refs("admin/branches").branches] == ["main"]


def test_delete_file_then_download_raises_entry_not_found(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    api.create_repo("admin/del")
    api.upload_file(path_or_fileobj=b"bye", path_in_repo="gone.txt", repo_id="admin/del")
    api.delete_file("gone.txt", repo_id="admin/del")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("admin/del", "gone.txt", cache_dir=tmp_path / "c", endpoint=node.url)
    api.delete_repo("admin/del")
    assert not api.repo_exists("admin/del")
    api.delete_repo("admin/del", missing_ok=True)


def test_dataset_repo_round_trip(node: RunningNode, api: HfApi, tmp_path: Path) -> None:
    api.create_repo("admin/captions", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n",
        path_in_repo="data/train.csv",
        repo_id="admin/captions",
        repo_type="dataset",
    )
    assert api.list_repo_files("admin/captions", repo_type="dataset") == [
        ".gitattributes",
        "data/train.csv",
    ]
    local = hf_hub_download(
        "admin/captions",
        "data/train.csv",
        repo_type="dataset",
        cache_dir=tmp_path / "c",
        endpoint=node.url,
    )
    assert Path(local).read_bytes() == b"a,b\n1,2\n"
    assert api.dataset_info("admin/captions").id == "admin/captions"
    assert [d.id for d in api.list_datasets(author="admin")] == ["admin/captions"]
    assert not api.repo_exists("admin/captions")  # it is a dataset, not a model


def test_hf_filesystem_ls_and_ranged_read(node: RunningNode, api: HfApi) -> None:
    payload = bytes(range(256)) * 64
    api.create_repo("admin/fs")
    api.upload_file(path_or_fileobj=payload, path_in_repo="sub/blob.bin", repo_id="admin/fs")
    fs = HfFileSystem(endpoint=node.url, token=node.admin_token)
    listed = fs.ls("admin/fs", detail=False)
    assert sorted(str(p) for p in listed) == ["admin/fs/.gitattributes", "admin/fs/sub"]
    with fs.open("admin/fs/sub/blob.bin", "rb", block_size=1000) as f:
        f.seek(10)
        assert f.read(20) == payload[10:30]
        f.seek(5000)
        assert f.read(3000) == payload[5000:8000]
    assert any(r and r.startswith("bytes=10-") for _, _, r in node.log.requests)


def test_hf_cli_upload_and_download(node: RunningNode, tmp_path: Path) -> None:
    HfApi(endpoint=node.url, token=node.admin_token).create_repo("admin/cli")
    source = tmp_path / "up.txt"
    source.write_text("via the hf CLI")
    env = {
        **os.environ,
        "HF_ENDPOINT": node.url,
        "HF_TOKEN": node.admin_token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hfhome"),
    }
    hf = str(Path(sys.executable).parent / "hf")
    subprocess.run(
        [hf, "upload", "admin/cli", str(source), "docs/up.txt"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    out = tmp_path / "down"
    subprocess.run(
        [hf, "download", "admin/cli", "docs/up.txt", "--local-dir", str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (out / "docs" / "up.txt").read_text() == "via the hf CLI"
