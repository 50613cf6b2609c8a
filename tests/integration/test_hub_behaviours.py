"""Hub behaviours tools take for granted (hf-hub-protocol.md §8), through the real client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.conftest import RunningNode


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


def test_create_repo_defaults_namespace_and_exist_ok_returns_url(
    node: RunningNode, api: HfApi
) -> None:
    url = api.create_repo("solo")
    assert url.repo_id == "admin/solo" and url.endpoint == node.url
    again = api.create_repo("admin/solo", exist_ok=True)
    assert again.repo_id == "admin/solo"
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_repo("admin/solo")
    assert raised.value.response.status_code == 409


def test_new_repo_starts_with_initial_commit_and_gitattributes(api: HfApi, tmp_path: Path) -> None:
    api.create_repo("admin/fresh")
    commits = api.list_repo_commits("admin/fresh")
    assert [c.title for c in commits] == ["initial commit"]
    assert api.list_repo_files("admin/fresh") == [".gitattributes"]
    attributes = api.hf_hub_download("admin/fresh", ".gitattributes", cache_dir=tmp_path)
    text = Path(attributes).read_text()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in text


def test_commit_with_stale_parent_commit_is_refused_with_412(api: HfApi) -> None:
    api.create_repo("admin/race")
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="admin/race").oid
    api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id="admin/race")
    head = api.model_info("admin/race").sha
    assert head is not None
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_commit(
            "admin/race",
            [CommitOperationAdd("b.txt", b"x")],
            commit_message="late",
            parent_commit=first,
        )
    assert raised.value.response.status_code == 412
    assert "updated since" in str(raised.value)
    assert api.model_info("admin/race").sha == head
    ok = api.create_commit(
        "admin/race",
        [CommitOperationAdd("b.txt", b"x")],
        commit_message="on time",
        parent_commit=head[:7],
    )
    assert api.model_info("admin/race").sha == ok.oid


def test_create_pr_commit_lands_on_refs_pr(api: HfApi) -> None:
    api.create_repo("admin/pr")
    main_head = api.model_info("admin/pr").sha
    info = api.upload_file(
        path_or_fileobj=b"proposal", path_in_repo="p.txt", repo_id="admin/pr", create_pr=True
    )
    assert info.pr_revision == "refs/pr/1" and info.pr_num == 1
    assert api.model_info("admin/pr").sha == main_head
    prs = api.list_repo_refs("admin/pr", include_pull_requests=True).pull_requests
    assert [(p.ref, p.target_commit) for p in prs or []] == [("refs/pr/1", info.oid)]
    assert api.file_exists("admin/pr", "p.txt", revision="refs/pr/1")


def test_same_content_upload_is_a_no_op(api: HfApi) -> None:
    api.create_repo("admin/noop")
    api.upload_file(path_or_fileobj=b"same" * 100, path_in_repo="w.bin", repo_id="admin/noop")
    api.upload_file(path_or_fileobj=b"cfg", path_in_repo="c.json", repo_id="admin/noop")
    before = api.model_info("admin/noop").sha
    api.upload_file(path_or_fileobj=b"same" * 100, path_in_repo="w.bin", repo_id="admin/noop")
    api.upload_file(path_or_fileobj=b"cfg", path_in_repo="c.json", repo_id="admin/noop")
    assert api.model_info("admin/noop").sha == before


def test_gitignore_and_gitattributes_decide_upload_mode(node: RunningNode, api: HfApi) -> None:
    api.create_repo("admin/modes")
    api.upload_file(path_or_fileobj=b"*.log\n", path_in_repo=".gitignore", repo_id="admin/modes")
    with node.client(node.admin_token) as http:
        answer = http.post(
            "/api/models/admin/modes/preupload/main",
            json={
                "files": [
                    {"path": "train.log", "size": 3, "sample": ""},
                    {"path": "tiny.safetensors", "size": 8, "sample": ""},
                    {"path": "big.dat", "size": 11 * 1024 * 1024, "sample": ""},
                    {"path": "config.json", "size": 10, "sample": ""},
                ]
            },
        ).json()
    modes = {f["path"]: (f["uploadMode"], f["shouldIgnore"]) for f in answer["files"]}
    assert modes == {
        "train.log": ("regular", True),
        "tiny.safetensors": ("lfs", False),
        "big.dat": ("lfs", False),
        "config.json": ("regular", False),
    }


def test_concurrent_commits_to_one_branch_all_land_in_a_linear_history(api: HfApi) -> None:
    api.create_repo("admin/busy")
    writers = 8

    def commit(i: int) -> str:
        return api.upload_file(
            path_or_fileobj=f"file {i}".encode(),
            path_in_repo=f"f{i}.txt",
            repo_id="admin/busy",
            commit_message=f"add f{i}",
        ).oid

    with ThreadPoolExecutor(max_workers=writers) as pool:
        shas = set(pool.map(commit, range(writers)))
    history = api.list_repo_commits("admin/busy")
    assert len(shas) == writers and shas <= {c.commit_id for c in history}
    assert len(history) == writers + 1  # plus the initial commit: nothing lost, no fork
    files = set(api.list_repo_files("admin/busy"))
    assert files == {".gitattributes"} | {f"f{i}.txt" for i in range(writers)}
