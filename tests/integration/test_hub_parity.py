"""Hub behaviours answered exactly as the Hub does, so the stock client raises its usual
exceptions (hf-hub-protocol.md §4 and §8), through the real client."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    RepoFolder,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from registry.domain.access import CONSOLE
from registry.domain.names import RepoId, RepoType
from registry.service.commits import AddBytes
from tests.conftest import RunningNode
from tests.hub import NDJSON, add, header, ndjson

STALE = "The branch was updated since you opened this page. Please refresh and try again."


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


def test_create_tag_of_missing_revision_is_revision_not_found(api: HfApi) -> None:
    api.create_repo("admin/tags")
    for revision in ("nope", "deadbeef", "0" * 40, "refs/heads/nope"):
        with pytest.raises(RevisionNotFoundError) as raised:
            api.create_tag("admin/tags", tag="v1", revision=revision)
        assert raised.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):  # the revision is checked before the name
        api.create_tag("admin/tags", tag="not a name", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.create_tag("admin/none", tag="v1")
    api.create_tag("admin/tags", tag="v1")
    assert [t.name for t in api.list_repo_refs("admin/tags").tags] == ["v1"]


def test_stale_parent_commit_is_412_with_the_hubs_message(api: HfApi) -> None:
    api.create_repo("admin/stale")
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id="admin/stale").oid
    head = api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id="admin/stale").oid
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_commit(
            "admin/stale",
            [CommitOperationAdd("b.txt", b"x")],
            commit_message="late",
            parent_commit=first,
        )
    response = raised.value.response
    assert response.status_code == 412
    assert raised.value.server_message == STALE
    assert response.json()["error"] == STALE
    assert response.headers["X-Error-Message"] == STALE
    detail = response.json()["detail"]
    assert detail["head"] == head and detail["parent_commit"] == first
    assert "updated since" in detail["explanation"]
    assert api.model_info("admin/stale").sha == head


@pytest.mark.parametrize("path", ["./file", "a/../b", "../x", "a\\b", ".git/config"])
def test_commit_of_a_path_that_is_not_one_is_422(node: RunningNode, path: str) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/paths")
    head = api.model_info("admin/paths").sha
    lines = [
        {"key": "header", "value": {"summary": "bad path"}},
        {"key": "file", "value": {"path": path, "content": "", "encoding": "base64"}},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    with node.client(node.admin_token) as http:
        response = http.post(
            "/api/models/admin/paths/commit/main",
            content=body,
            headers={"content-type": "application/x-ndjson"},
        )
    assert response.status_code == 422, response.text
    assert response.headers["X-Error-Code"] == "InvalidPath"
    assert repr(path) in response.json()["error"]
    assert api.model_info("admin/paths").sha == head
    with pytest.raises(ValueError):  # the client refuses these itself before sending
        api.create_commit(
            "admin/paths",
            [CommitOperationAdd("a/../b", b"x")],
            commit_message="bad",
        )


def test_delete_of_a_folder_named_without_slash_deletes_the_folder(api: HfApi) -> None:
    api.create_repo("admin/folders")
    api.create_commit(
        "admin/folders",
        [
            CommitOperationAdd("logs/a.txt", b"a"),
            CommitOperationAdd("logs/sub/b.txt", b"b"),
            CommitOperationAdd("logs.txt", b"c"),
        ],
        commit_message="add",
    )
    api.create_commit("admin/folders", [CommitOperationDelete("logs")], commit_message="drop logs")
    assert sorted(api.list_repo_files("admin/folders")) == [".gitattributes", "logs.txt"]
    api.delete_file("logs.txt", "admin/folders")  # a file is still deleted as a file
    assert api.list_repo_files("admin/folders") == [".gitattributes"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("nothing", "admin/folders")
    with pytest.raises(EntryNotFoundError):
        api.delete_folder("nothing", "admin/folders")


def test_list_repo_commits_formatted_carries_html_title_and_message(api: HfApi) -> None:
    api.create_repo("admin/formatted")
    api.upload_file(
        path_or_fileobj=b"x",
        path_in_repo="a.txt",
        repo_id="admin/formatted",
        commit_message="Add <a> & b",
        commit_description="first line\nsecond line\n\nnext paragraph",
    )
    plain = api.list_repo_commits("admin/formatted")
    assert plain[0].formatted_title is None and plain[0].formatted_message is None
    formatted = api.list_repo_commits("admin/formatted", formatted=True)
    top = formatted[0]
    assert top.title == "Add <a> & b"
    assert top.formatted_title == "Add &lt;a&gt; &amp; b"
    assert top.formatted_message == "<p>first line<br>second line</p><p>next paragraph</p>"
    assert formatted[-1].formatted_title == "initial commit"
    assert formatted[-1].formatted_message == ""


def test_commits_on_a_missing_repo_are_repo_not_found(api: HfApi) -> None:
    with pytest.raises(RepositoryNotFoundError) as raised:
        api.list_repo_commits("admin/missing")
    assert raised.value.response.status_code == 404
    with pytest.raises(RepositoryNotFoundError):
        api.create_commit("admin/missing", [CommitOperationAdd("a.txt", b"x")], commit_message="x")
    api.create_repo("admin/present")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits("admin/present", revision="nope")


def test_auth_check_answers_like_the_hub(
    node: RunningNode, api: HfApi, make_token: Callable[..., str]
) -> None:
    api.create_repo("admin/open")
    api.create_repo("admin/secret", private=True)
    api.auth_check("admin/open")  # returns normally
    api.auth_check("admin/secret")  # returns normally
    api.auth_check("admin/secret", write=True)  # returns normally
    with pytest.raises(RepositoryNotFoundError) as raised:
        api.auth_check("admin/missing")
    assert raised.value.response.status_code == 404
    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    bob.auth_check("admin/open")  # returns normally
    with pytest.raises(RepositoryNotFoundError):
        bob.auth_check("admin/secret")
    with pytest.raises(HfHubHTTPError) as refused:
        bob.auth_check("admin/open", write=True)
    assert refused.value.response.status_code == 403
    anonymous = HfApi(endpoint=node.url, token=False)
    anonymous.auth_check("admin/open", token=False)  # returns normally
    with pytest.raises(RepositoryNotFoundError):
        anonymous.auth_check("admin/secret", token=False)


def canonical_repo(node: RunningNode, name: str, *, private: bool = False) -> str:
    """A repo id without a namespace (`gpt2`), made on the node itself (the Hub client's
    create_repo puts the caller's namespace in front of a bare name)."""
    repo = RepoId.canonical(RepoType.MODEL, name)
    node.runtime.repos.create(CONSOLE, repo, private=private)
    node.runtime.commits.commit(
        CONSOLE,
        repo,
        "main",
        title="Add config",
        message="",
        operations=[AddBytes("config.json", b"{}"), AddBytes("sub/w.txt", b"w")],
    )
    return name


def test_repo_ids_without_a_namespace_reach_every_route(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    canonical_repo(node, "gpt2")
    api.create_repo("admin/gpt2")  # a namespaced namesake is another repo
    info = api.model_info("gpt2")
    assert info.id == "gpt2" and info.sha is not None
    assert api.model_info("gpt2", revision="main").sha == info.sha
    assert api.repo_exists("gpt2") and api.revision_exists("gpt2", "main")
    assert sorted(api.list_repo_files("gpt2")) == [".gitattributes", "config.json", "sub/w.txt"]
    assert [f.path for f in api.list_repo_tree("gpt2", path_in_repo="sub")] == ["sub/w.txt"]
    assert [c.title for c in api.list_repo_commits("gpt2")] == ["Add config", "initial commit"]
    assert [b.name for b in api.list_repo_refs("gpt2").branches] == ["main"]
    assert api.file_exists("gpt2", "config.json")
    assert not api.file_exists("gpt2", "nope.json")
    path = api.hf_hub_download("gpt2", "sub/w.txt", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"w"
    api.auth_check("gpt2")  # returns normally
    assert api.list_repo_files("admin/gpt2") == [".gitattributes"]
    assert not api.revision_exists("gpt2", "nope")
    with node.client() as http:  # again, now from the read cache (registry.api.fastpath)
        assert http.get("/api/models/gpt2").json()["sha"] == info.sha
        assert http.head("/gpt2/resolve/main/config.json").headers["X-Repo-Commit"] == info.sha
        assert http.get("/api/models//gpt2").status_code == 404
        assert http.head("//gpt2/resolve/main/config.json").status_code == 404
    with pytest.raises(RevisionNotFoundError):
        api.model_info("gpt2", revision="nope")


def test_unknown_repo_ids_without_a_namespace_are_repo_not_found(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    assert not api.repo_exists("bert-base")
    assert not api.revision_exists("bert-base", "main")
    assert not api.file_exists("bert-base", "config.json")
    for call in (
        lambda: api.model_info("bert-base"),
        lambda: api.model_info("bert-base", revision="main"),
        lambda: api.list_repo_commits("bert-base"),
        lambda: api.list_repo_files("bert-base"),
        lambda: api.hf_hub_download("bert-base", "config.json", cache_dir=tmp_path),
    ):
        with pytest.raises(RepositoryNotFoundError) as raised:
            call()
        assert raised.value.response.status_code == 404
    canonical_repo(node, "secret", private=True)
    bob = HfApi(endpoint=node.url, token=node.runtime.auth.create_token("bob", write=False))
    assert not bob.repo_exists("secret")
    assert api.repo_exists("secret")
    with node.client() as http:  # a single-segment page path is still the author page
        page = http.get("/secret")
        assert page.headers["content-type"].startswith("text/html")


def test_repo_ids_match_whatever_their_case(
    node: RunningNode, api: HfApi, make_token: Callable[..., str], tmp_path: Path
) -> None:
    api.create_repo("admin/MixedCase")
    commit = api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="ADMIN/mixedcase")
    info = api.model_info("admin/mixedcase")
    assert info.id == "admin/MixedCase" and info.sha == commit.oid
    assert api.list_repo_files("Admin/MIXEDCASE") == [".gitattributes", "a.txt"]
    assert api.file_exists("admin/mixedCASE", "a.txt")
    path = api.hf_hub_download("ADMIN/MIXEDCASE", "a.txt", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"x"
    assert "admin/MixedCase" in [m.id for m in api.list_models(author="admin")]
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_repo("admin/mixedcase")
    assert raised.value.response.status_code == 409
    assert raised.value.response.headers["X-Error-Code"] == "RepoExists"
    assert api.create_repo("admin/MIXEDCASE", exist_ok=True).repo_id == "admin/MIXEDCASE"
    bob = HfApi(endpoint=node.url, token=make_token("bob"))
    bob.create_repo("bob/Thing")
    bob.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="Bob/THING")
    assert bob.list_repo_files("bob/thing") == [".gitattributes", "b.txt"]
    canonical_repo(node, "GPT2x")
    assert api.model_info("gpt2X").id == "GPT2x"
    api.delete_repo("admin/mixedcase")
    assert not api.repo_exists("admin/MixedCase")


def test_hf_file_system_modified_reads_last_commits(node: RunningNode, api: HfApi) -> None:
    api.create_repo("admin/times")
    first = api.create_commit(
        "admin/times",
        [CommitOperationAdd("d/a.txt", b"a"), CommitOperationAdd("d/e/b.txt", b"b")],
        commit_message="first",
    )
    second = api.upload_file(path_or_fileobj=b"c", path_in_repo="d/e/c.txt", repo_id="admin/times")
    dates = {c.commit_id: c.created_at for c in api.list_repo_commits("admin/times")}
    fs = HfFileSystem(endpoint=node.url, token=node.admin_token)
    assert fs.modified("admin/times/d/a.txt") == dates[first.oid]
    assert fs.modified("admin/times/d/e/c.txt") == dates[second.oid]
    assert fs.modified("admin/times/d") == dates[second.oid]
    assert fs.modified("admin/times/d/e") == dates[second.oid]
    tree = api.list_repo_tree("admin/times", expand=True, recursive=True)
    folders = {t.path: t.last_commit for t in tree if isinstance(t, RepoFolder)}
    assert {p: c.oid for p, c in folders.items() if c} == {"d": second.oid, "d/e": second.oid}
    (info,) = api.get_paths_info("admin/times", ["d"], expand=True)
    assert isinstance(info, RepoFolder) and info.last_commit is not None
    assert info.last_commit.title == "Upload d/e/c.txt with huggingface_hub"
    (plain,) = api.get_paths_info("admin/times", ["d"])
    assert isinstance(plain, RepoFolder) and plain.last_commit is None


def test_repo_ids_without_a_namespace_take_commits_and_lfs_uploads(
    node: RunningNode, api: HfApi, tmp_path: Path
) -> None:
    """The write routes too: preupload, the LFS batch and PUT, commits, branches and tags.
    (huggingface_hub's CommitInfo refuses a single-segment commit URL, as the Hub itself now
    has no such repos, so the commits go over the wire here; branch and tag calls use it.)"""
    canonical_repo(node, "solo")
    weights = os.urandom(300_000)
    oid = hashlib.sha256(weights).hexdigest()
    with node.client(node.admin_token) as http:
        batch = {"operation": "upload", "transfers": ["basic"]}
        asked = http.post(
            "/solo.git/info/lfs/objects/batch",
            json=batch | {"objects": [{"oid": oid, "size": len(weights)}]},
        )
        assert asked.status_code == 200, asked.text
        href = asked.json()["objects"][0]["actions"]["upload"]["href"]
        assert http.put(href, content=weights).status_code == 200
        preupload = {"files": [{"path": "notes.txt", "size": 5, "sample": ""}]}
        assert http.post("/api/models/solo/preupload/main", json=preupload).status_code == 200
        lfs = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid}}
        body = ndjson(header("add two"), add("notes.txt", b"notes"), lfs)
        committed = http.post("/api/models/solo/commit/main", content=body, headers=NDJSON)
        assert committed.status_code == 200, committed.text
        assert committed.json()["commitUrl"].endswith(
            f"/solo/commit/{committed.json()['commitOid']}"
        )
        missing = http.post("/api/models/nobody/commit/main", content=body, headers=NDJSON)
        assert (missing.status_code, missing.headers["x-error-code"]) == (404, "RepoNotFound")
    api.create_branch("solo", branch="dev")
    api.create_tag("solo", tag="v1")
    assert sorted(api.list_repo_files("solo")) == [
        ".gitattributes",
        "config.json",
        "notes.txt",
        "sub/w.txt",
        "w.bin",
    ]
    assert [t.name for t in api.list_repo_refs("solo").tags] == ["v1"]
    got = api.hf_hub_download("solo", "w.bin", revision="v1", cache_dir=tmp_path)
    assert Path(got).read_bytes() == weights
    api.delete_branch("solo", branch="dev")
    assert [b.name for b in api.list_repo_refs("solo").branches] == ["main"]
