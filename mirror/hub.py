"""A HuggingFace Hub mirror, through the stock `huggingface_hub` client.

The endpoint and token default to the client's own conventions (`HF_ENDPOINT`, `HF_TOKEN`,
the saved login). A branch is mirrored by making the Hub branch's tree equal ours in one
commit (files the Hub already holds with the same hash are not sent again), so a retried push
is a no-op. The commit's description names our commit id, which lets a tag find its commit.
A node used as the endpoint needs `HF_HUB_DISABLE_XET=1` in the pushing process's environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile

from mirror.targets import (
    COMMIT_MARKER,
    PushCommit,
    PushFile,
    RemoteBook,
    RemoteCommits,
    RemoteHead,
    carried,
)
from registry.domain.digest import git_blob_sha1
from registry.domain.errors import MirrorUnavailableError
from registry.domain.names import recovered_branches, short_ref

logger = logging.getLogger(__name__)
INLINE_MAX = 10 * 1024 * 1024  # the Hub stores larger files through LFS whatever the rules


class HubTarget:
    def __init__(
        self,
        name: str,
        endpoint: str | None,
        token: str | None,
        remotes: RemoteCommits | None = None,
    ) -> None:
        self.name = name
        self._api = HfApi(endpoint=endpoint, token=token)
        self._book = RemoteBook(name, remotes)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except HfHubHTTPError as exc:
            raise MirrorUnavailableError(f"{self.name}: {what}: {exc}") from exc
        except OSError as exc:  # connection refused, timeouts
            raise MirrorUnavailableError(f"{self.name}: {what}: {exc}") from exc

    def push_commit(self, commit: PushCommit) -> None:
        with self._errors(f"creating {commit.repo}"):
            self._api.create_repo(commit.repo, repo_type=commit.repo_type, exist_ok=True)

    def set_ref(self, commit: PushCommit, ref: str) -> None:
        if ref.startswith("refs/heads/"):
            with self._errors(f"pushing {commit.repo}@{ref}"):
                self._set_branch(commit, ref.removeprefix("refs/heads/"))
        elif ref.startswith("refs/tags/"):
            with self._errors(f"tagging {commit.repo}"):
                self._set_tag(commit, ref.removeprefix("refs/tags/"))

    def _remote_tree(self, commit: PushCommit, branch: str) -> dict[str, RepoFile] | None:
        try:
            entries = self._api.list_repo_tree(
                commit.repo, revision=branch, recursive=True, repo_type=commit.repo_type
            )
            return {e.path: e for e in entries if isinstance(e, RepoFile)}
        except (RevisionNotFoundError, RepositoryNotFoundError):
            return None

    def _set_branch(self, commit: PushCommit, branch: str) -> None:
        remote = self._remote_tree(commit, branch)
        if remote is None:
            self._api.create_branch(
                commit.repo, branch=branch, repo_type=commit.repo_type, exist_ok=True
            )
            remote = self._remote_tree(commit, branch) or {}
        ours = {f.path for f in commit.files}
        changed = [f for f in commit.files if not _same(f, remote.get(f.path))]
        for f in changed:
            f.require_intact()  # huggingface_hub would hash rotted bytes and send them as new
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.source)) for f in changed
        ]
        operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(set(remote) - ours)]
        if not operations:
            head = self._api.repo_info(commit.repo, revision=branch, repo_type=commit.repo_type)
            self._book.record(commit.commit, str(head.sha))
            return
        info = self._api.create_commit(
            commit.repo,
            operations,
            commit_message=commit.title or "Mirror commit",
            commit_description=f"{COMMIT_MARKER} {commit.commit}",
            revision=branch,
            repo_type=commit.repo_type,
        )
        self._book.record(commit.commit, info.oid)

    def _set_tag(self, commit: PushCommit, tag: str) -> None:
        remote = self._book.for_tag(commit.commit, tag)
        if remote is None:
            return
        self._api.create_tag(
            commit.repo, tag=tag, revision=remote, repo_type=commit.repo_type, exist_ok=True
        )

    def head(self, repo_type: str, repo: str, ref: str) -> RemoteHead | None:
        short = short_ref(ref)
        with self._errors(f"reading {ref} of {repo}"):
            try:
                remote = str(self._api.repo_info(repo, revision=short, repo_type=repo_type).sha)
                ours = self._book.ours(remote)
                if ours is None:  # not pushed from this node's history: does it name one of ours?
                    log = self._api.list_repo_commits(repo, revision=remote, repo_type=repo_type)
                    ours = carried(log[0].message) if log and log[0].commit_id == remote else None
            except (RevisionNotFoundError, RepositoryNotFoundError):
                return None
        return RemoteHead(remote, ours)

    def keep(self, repo_type: str, repo: str, ref: str, head: RemoteHead) -> str:
        for name in recovered_branches(ref):
            with self._errors(f"keeping {ref} of {repo} as {name}"):
                there = self.head(repo_type, repo, f"refs/heads/{name}")
                if there is None:
                    self._api.create_branch(
                        repo, branch=name, revision=head.remote, repo_type=repo_type
                    )
                if there is None or there.remote == head.remote:
                    return name
        raise AssertionError("recovered_branches ends by raising")

    def delete_ref(self, repo_type: str, repo: str, ref: str) -> None:
        with self._errors(f"deleting {ref} of {repo}"):
            try:
                if ref.startswith("refs/heads/"):
                    self._api.delete_branch(repo, branch=ref[11:], repo_type=repo_type)
                elif ref.startswith("refs/tags/"):
                    self._api.delete_tag(repo, tag=ref[10:], repo_type=repo_type)
            except (RevisionNotFoundError, RepositoryNotFoundError):
                pass  # already gone


def _same(ours: PushFile, theirs: RepoFile | None) -> bool:
    """Does the Hub already hold exactly this file at this path?"""
    if theirs is None or theirs.size != ours.size:
        return False
    if theirs.lfs is not None:
        return bool(theirs.lfs.sha256 == ours.sha256)
    if ours.size > INLINE_MAX:
        return False
    return bool(theirs.blob_id == git_blob_sha1(ours.source.read_bytes()))
