"""Discussions and pull requests through the real HfApi: open, list, read, comment, rename,
close, merge; who may do what; PR commits land on refs/pr/<n>; a discussion reaches a peer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.community import (
    DiscussionComment,
    DiscussionCommit,
    DiscussionStatusChange,
    DiscussionTitleChange,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile

from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.integration.test_federation_basic import wait_for
from tests.integration.test_xet import stock_client


@pytest.fixture
def api(node: RunningNode) -> HfApi:
    return HfApi(endpoint=node.url, token=node.admin_token)


@pytest.fixture
def bob(node: RunningNode, make_token: Callable[..., str]) -> HfApi:
    """A signed-in user with no write access to admin's repos."""
    return HfApi(endpoint=node.url, token=make_token("bob"))


def status_of(raised: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    return raised.value.response.status_code


def test_discussion_open_comment_rename_close_and_list(api: HfApi, bob: HfApi) -> None:
    api.create_repo("admin/talk")
    opened = bob.create_discussion("admin/talk", "Which license?", description="Is it MIT?")
    assert (opened.num, opened.title, opened.author, opened.status) == (
        1,
        "Which license?",
        "bob",
        "open",
    )
    assert opened.is_pull_request is False and opened.repo_id == "admin/talk"
    assert opened.target_branch is None and opened.git_reference is None
    [first] = opened.events
    assert isinstance(first, DiscussionComment) and first.content == "Is it MIT?"

    reply = api.comment_discussion("admin/talk", 1, "Apache-2.0")
    assert isinstance(reply, DiscussionComment)
    assert (reply.author, reply.content, reply.edited) == ("admin", "Apache-2.0", False)
    edited = api.edit_discussion_comment("admin/talk", 1, reply.id, "Apache-2.0, see LICENSE")
    assert edited.id == reply.id and edited.content == "Apache-2.0, see LICENSE" and edited.edited
    renamed = bob.rename_discussion("admin/talk", 1, "License?")
    assert isinstance(renamed, DiscussionTitleChange)
    assert (renamed.old_title, renamed.new_title) == ("Which license?", "License?")
    closed = api.change_discussion_status("admin/talk", 1, "closed", comment="answered")
    assert isinstance(closed, DiscussionStatusChange) and closed.new_status == "closed"

    details = api.get_discussion_details("admin/talk", 1)
    assert (details.title, details.status) == ("License?", "closed")
    assert [e.type for e in details.events] == [
        "comment",
        "comment",
        "title-change",
        "comment",
        "status-change",
    ]
    comment = details.events[1]
    assert isinstance(comment, DiscussionComment) and comment.content == "Apache-2.0, see LICENSE"

    bob.create_discussion("admin/talk", "Second question")
    listed = list(api.get_repo_discussions("admin/talk"))
    assert [(d.num, d.title, d.status, d.author) for d in listed] == [
        (2, "Second question", "open", "bob"),
        (1, "License?", "closed", "bob"),
    ]
    assert [d.num for d in api.get_repo_discussions("admin/talk", discussion_status="open")] == [2]
    assert [d.num for d in api.get_repo_discussions("admin/talk", discussion_status="closed")] == [
        1
    ]
    assert list(api.get_repo_discussions("admin/talk", author="admin")) == []
    assert list(api.get_repo_discussions("admin/talk", discussion_type="pull_request")) == []


def test_discussion_errors(api: HfApi, bob: HfApi, node: RunningNode) -> None:
    api.create_repo("admin/errs")
    with pytest.raises(RepositoryNotFoundError):
        list(api.get_repo_discussions("admin/missing"))
    with pytest.raises(RepositoryNotFoundError):
        api.create_discussion("admin/missing", "hello")
    with pytest.raises(HfHubHTTPError) as raised:
        api.get_discussion_details("admin/errs", 7)
    assert status_of(raised) == 404 and "Discussion #7 not found" in str(raised.value)
    with pytest.raises(HfHubHTTPError) as raised:
        api.comment_discussion("admin/errs", 7, "anyone?")
    assert status_of(raised) == 404
    anonymous = HfApi(endpoint=node.url, token=False)
    with pytest.raises(HfHubHTTPError) as raised:
        anonymous.create_discussion("admin/errs", "hello", token=False)
    assert status_of(raised) == 401
    api.create_discussion("admin/errs", "mine")
    with pytest.raises(HfHubHTTPError) as raised:
        bob.change_discussion_status("admin/errs", 1, "closed")
    assert status_of(raised) == 403
    with pytest.raises(HfHubHTTPError) as raised:
        bob.rename_discussion("admin/errs", 1, "theirs")
    assert status_of(raised) == 403
    assert api.get_discussion_details("admin/errs", 1).status == "open"
    api.delete_repo("admin/errs")  # its discussions go with it
    api.create_repo("admin/errs")
    assert list(api.get_repo_discussions("admin/errs")) == []
    assert api.create_discussion("admin/errs", "anew").num == 1


def test_pr_by_commit_lands_on_refs_pr_and_merges(api: HfApi, bob: HfApi) -> None:
    api.create_repo("admin/prs")
    main = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id="admin/prs").oid
    info = bob.upload_file(
        path_or_fileobj=b"proposal",
        path_in_repo="p.txt",
        repo_id="admin/prs",
        commit_message="Add p.txt",
        commit_description="please",
        create_pr=True,
    )
    assert info.pr_url is not None and info.pr_url.endswith("/discussions/1")
    assert info.pr_revision == "refs/pr/1" and info.pr_num == 1
    assert api.model_info("admin/prs").sha == main  # the branch did not move
    assert not api.file_exists("admin/prs", "p.txt")
    assert api.file_exists("admin/prs", "p.txt", revision="refs/pr/1")

    pr = api.get_discussion_details("admin/prs", 1)
    assert (pr.title, pr.author, pr.status, pr.is_pull_request) == (
        "Add p.txt",
        "bob",
        "open",
        True,
    )
    assert pr.target_branch == "refs/heads/main" and pr.git_reference == "refs/pr/1"
    assert pr.conflicting_files == [] and pr.merge_commit_oid is None
    assert pr.diff is not None
    assert "diff --git a/p.txt b/p.txt\nnew file\n--- /dev/null\n+++ b/p.txt\n" in pr.diff
    assert pr.diff.endswith("+proposal\n")
    commit = pr.events[-1]
    assert isinstance(commit, DiscussionCommit)
    assert (commit.summary, commit.oid) == ("Add p.txt", info.oid)
    [listed] = api.get_repo_discussions("admin/prs", discussion_type="pull_request")
    assert listed.is_pull_request and listed.num == 1

    # The PR's author pushes a second commit to its ref.
    bob.create_commit(
        "admin/prs",
        [CommitOperationAdd("q.txt", b"more")],
        commit_message="Add q.txt",
        revision="refs/pr/1",
    )
    with pytest.raises(HfHubHTTPError) as raised:
        bob.merge_pull_request("admin/prs", 1)
    assert status_of(raised) == 403
    api.merge_pull_request("admin/prs", 1, comment="thanks")
    merged = api.get_discussion_details("admin/prs", 1)
    assert merged.status == "merged" and merged.merge_commit_oid is not None
    assert api.model_info("admin/prs").sha == merged.merge_commit_oid
    assert sorted(api.list_repo_files("admin/prs")) == [".gitattributes", "a.txt", "p.txt", "q.txt"]
    assert api.file_exists("admin/prs", "q.txt", revision="refs/pr/1")  # the PR ref stays
    with pytest.raises(HfHubHTTPError) as raised:
        api.merge_pull_request("admin/prs", 1)
    assert status_of(raised) == 409


def test_pr_to_a_branch_and_to_a_missing_branch(api: HfApi) -> None:
    api.create_repo("admin/br")
    api.create_branch("admin/br", branch="dev")
    info = api.upload_file(
        path_or_fileobj=b"d",
        path_in_repo="d.txt",
        repo_id="admin/br",
        revision="dev",
        create_pr=True,
    )
    assert info.pr_num == 1
    assert api.get_discussion_details("admin/br", 1).target_branch == "refs/heads/dev"
    api.merge_pull_request("admin/br", 1)
    assert api.file_exists("admin/br", "d.txt", revision="dev")
    assert not api.file_exists("admin/br", "d.txt")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x.txt",
            repo_id="admin/br",
            revision="nope",
            create_pr=True,
        )
    assert [d.num for d in api.get_repo_discussions("admin/br")] == [1]


def test_merge_after_main_moved_and_conflicts(api: HfApi) -> None:
    api.create_repo("admin/mv")
    api.upload_file(path_or_fileobj=b"1", path_in_repo="shared.txt", repo_id="admin/mv")
    api.upload_file(path_or_fileobj=b"p", path_in_repo="pr.txt", repo_id="admin/mv", create_pr=True)
    api.upload_file(
        path_or_fileobj=b"2", path_in_repo="shared.txt", repo_id="admin/mv", revision="refs/pr/1"
    )  # PR 1 changes shared.txt too
    api.upload_file(
        path_or_fileobj=b"o", path_in_repo="other.txt", repo_id="admin/mv", create_pr=True
    )
    api.upload_file(path_or_fileobj=b"3", path_in_repo="shared.txt", repo_id="admin/mv")
    head = api.model_info("admin/mv").sha

    with pytest.raises(HfHubHTTPError) as raised:
        api.merge_pull_request("admin/mv", 1)
    assert status_of(raised) == 412 and "shared.txt" in str(raised.value)
    assert api.model_info("admin/mv").sha == head
    assert api.get_discussion_details("admin/mv", 1).conflicting_files == ["shared.txt"]

    api.merge_pull_request("admin/mv", 2)  # main moved, but not on other.txt
    merged = api.get_discussion_details("admin/mv", 2)
    assert merged.status == "merged"
    assert sorted(api.list_repo_files("admin/mv")) == [
        ".gitattributes",
        "other.txt",
        "shared.txt",
    ]
    assert [c.commit_id for c in api.list_repo_commits("admin/mv")][:2] == [
        merged.merge_commit_oid,
        head,
    ]


def test_draft_pull_request_opens_with_its_first_commit(api: HfApi, bob: HfApi) -> None:
    api.create_repo("admin/draft")
    pr = bob.create_pull_request("admin/draft", "Add a file")
    assert (pr.num, pr.status, pr.is_pull_request) == (1, "draft", True)
    with pytest.raises(HfHubHTTPError) as raised:
        api.merge_pull_request("admin/draft", 1)
    assert status_of(raised) == 409 and "changes nothing" in str(raised.value)
    assert api.list_repo_refs("admin/draft", include_pull_requests=True).pull_requests
    bob.create_commit(
        "admin/draft",
        [CommitOperationAdd("new.txt", b"n")],
        commit_message="new",
        revision=pr.git_reference,
    )
    assert api.get_discussion_details("admin/draft", 1).status == "open"
    other = HfApi(endpoint=api.endpoint, token=ADMIN_TOKEN)
    other.change_discussion_status("admin/draft", 1, "closed")
    with pytest.raises(HfHubHTTPError) as raised:
        bob.create_commit(
            "admin/draft",
            [CommitOperationAdd("late.txt", b"l")],
            commit_message="late",
            revision="refs/pr/1",
        )
    assert status_of(raised) == 409


def test_discussion_and_comment_reach_a_peer(
    node: RunningNode, start_node: Callable[..., RunningNode]
) -> None:
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN})
    assert added.status_code == 201, added.text
    home = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    home.create_repo("admin/fed")
    home.create_discussion("admin/fed", "Hello peers", description="first")
    home.comment_discussion("admin/fed", 1, "second")
    peer = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)

    def arrived() -> bool:
        if not peer.repo_exists("admin/fed"):
            return False
        found = list(peer.get_repo_discussions("admin/fed"))
        return bool(found) and len(peer.get_discussion_details("admin/fed", 1).events) == 2

    wait_for(arrived)
    details = peer.get_discussion_details("admin/fed", 1)
    assert (details.title, details.author, details.status) == ("Hello peers", "admin", "open")
    contents = [e.content for e in details.events if isinstance(e, DiscussionComment)]
    assert contents == ["first", "second"]


def test_pr_with_an_lfs_file_by_a_user_without_write_access(
    api: HfApi, bob: HfApi, node: RunningNode, make_token: Callable[..., str]
) -> None:
    api.create_repo("admin/big")
    weights = b"\x00" * 4096
    info = bob.upload_file(  # *.safetensors is LFS: batch without `ref`, then the commit
        path_or_fileobj=weights,
        path_in_repo="w.safetensors",
        repo_id="admin/big",
        create_pr=True,
    )
    assert info.pr_num == 1
    assert not api.file_exists("admin/big", "w.safetensors")
    api.merge_pull_request("admin/big", 1)
    [merged] = api.get_paths_info("admin/big", ["w.safetensors"])
    assert isinstance(merged, RepoFile) and merged.size == len(weights)
    assert merged.lfs is not None and merged.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    with pytest.raises(HfHubHTTPError) as raised:  # to the branch itself: writers only
        bob.upload_file(path_or_fileobj=weights, path_in_repo="x.safetensors", repo_id="admin/big")
    assert status_of(raised) == 403
    with node.client(make_token("carol")) as http:  # a Xet token for a PR, not for a branch
        pr = http.get("/api/models/admin/big/xet-write-token/main", params={"create_pr": "1"})
        branch = http.get("/api/models/admin/big/xet-write-token/main")
    assert pr.status_code == 200 and branch.status_code == 403
    with node.client(make_token("dave", write=False)) as http:
        read_only = http.get(
            "/api/models/admin/big/xet-write-token/main", params={"create_pr": "1"}
        )
    assert read_only.status_code == 403


def test_pr_through_xet_by_a_user_without_write_access(
    api: HfApi, node: RunningNode, make_token: Callable[..., str], tmp_path: Path
) -> None:
    api.create_repo("admin/xpr")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(os.urandom(2 * 1024 * 1024))
    out = stock_client(
        tmp_path,
        node,
        f"""
        bob = HfApi(endpoint=endpoint, token={make_token("bob")!r})
        info = bob.upload_file(path_or_fileobj={str(weights)!r}, path_in_repo="w.safetensors",
                               repo_id="admin/xpr", create_pr=True)
        print(info.pr_revision)
        """,
    )
    assert out.stdout.strip().splitlines()[-1] == "refs/pr/1"
    assert node.log.count("POST", "/cas/v1/shards") == 1  # through Xet, not LFS
    [entry] = api.get_paths_info("admin/xpr", ["w.safetensors"], revision="refs/pr/1")
    assert isinstance(entry, RepoFile) and entry.size == 2 * 1024 * 1024
    assert not api.file_exists("admin/xpr", "w.safetensors")


def test_discussions_pages_list_and_show_them(api: HfApi, bob: HfApi, node: RunningNode) -> None:
    api.create_repo("admin/paged")
    bob.create_discussion("admin/paged", "Is <b>this</b> safe?", description="asking")
    bob.upload_file(
        path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="admin/paged", create_pr=True
    )
    with node.client() as http:
        listing = http.get("/admin/paged/discussions")
        shown = http.get("/admin/paged/discussions/2")
        card = http.get("/admin/paged")
        missing = http.get("/admin/paged/discussions/9")
    assert listing.status_code == 200
    assert "#1 Is &lt;b&gt;this&lt;/b&gt; safe?" in listing.text  # escaped
    assert "pull request, open, by bob" in listing.text
    assert shown.status_code == 200 and "refs/pr/2" in shown.text and "Upload x.txt" in shown.text
    assert 'href="/admin/paged/discussions"' in card.text
    assert missing.status_code == 404
