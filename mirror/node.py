"""Another modelyard node as a mirror: blobs through its native API (verified by BLAKE3 on
arrival, skipped when present), commits through its Hub-compatible routes naming those blobs,
so no byte is sent twice and none is hashed again here."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

from mirror.targets import (
    COMMIT_MARKER,
    PushCommit,
    RemoteBook,
    RemoteCommits,
    RemoteHead,
    carried,
)
from registry.client import RegistryClient, RetryPolicy
from registry.domain.digest import Digest
from registry.domain.errors import ConflictError, NotFoundError, RevisionNotFoundError
from registry.domain.manifest import ManifestFile
from registry.domain.names import recovered_branches, short_ref

logger = logging.getLogger(__name__)
INLINE_MAX = 1024 * 1024  # regular files up to this size travel inline in the commit


class NodeTarget:
    def __init__(
        self,
        name: str,
        url: str,
        token: str | None,
        remotes: RemoteCommits | None = None,
        retry: RetryPolicy | None = None,
        *,
        allow_private_redirects: bool = False,
    ) -> None:
        self.name = name
        self._url = url
        self._client = RegistryClient(
            url,
            token=token,
            retry=retry,
            timeout=60,
            allow_private_redirects=allow_private_redirects,
        )
        self._book = RemoteBook(name, remotes)

    def close(self) -> None:
        self._client.close()

    def _api(self, commit: PushCommit) -> str:
        return f"/api/{commit.repo_type}s/{commit.repo}"

    def push_commit(self, commit: PushCommit) -> None:
        """Create the repo if needed, then send the blobs the node does not have."""
        namespace, name = commit.repo.split("/", 1)
        body = {"name": name, "organization": namespace, "type": commit.repo_type}
        try:
            self._client.hub("POST", "/api/repos/create", json=body)
        except ConflictError:
            pass  # it exists
        for file in commit.files:
            digest = Digest(file.blake3)
            if not self._client.has_blob(digest):
                self._client.upload_blob(digest, file.source)

    def set_ref(self, commit: PushCommit, ref: str) -> None:
        if ref.startswith("refs/heads/"):
            self._set_branch(commit, ref.removeprefix("refs/heads/"))
        elif ref.startswith("refs/tags/"):
            self._set_tag(commit, ref.removeprefix("refs/tags/"))

    def _set_branch(self, commit: PushCommit, branch: str) -> None:
        """Make the branch's tree equal the commit's, in one commit (none if equal)."""
        try:
            remote = {
                f.path: f
                for f in self._client.manifest(commit.repo_type, commit.repo, branch).files
            }
        except RevisionNotFoundError:
            self._client.hub(
                "POST", f"{self._api(commit)}/branch/{quote(branch, safe='')}", json={}
            )
            remote = {}
        lines = self._operations(commit, remote)
        if not lines:
            head = self._client.manifest(commit.repo_type, commit.repo, branch).commit
            self._book.record(commit.commit, head)
            return
        header = {
            "summary": commit.title or "Mirror commit",
            "description": f"{COMMIT_MARKER} {commit.commit}",
        }
        payload = "\n".join(json.dumps(x) for x in [{"key": "header", "value": header}, *lines])
        answer = self._client.hub(
            "POST",
            f"{self._api(commit)}/commit/{quote(branch, safe='')}",
            content=payload.encode(),
            headers={"content-type": "application/x-ndjson"},
        )
        self._book.record(commit.commit, str(answer.json()["commitOid"]))

    def _operations(
        self, commit: PushCommit, remote: dict[str, ManifestFile]
    ) -> list[dict[str, object]]:
        lines: list[dict[str, object]] = []
        ours = {f.path for f in commit.files}
        for file in commit.files:
            there = remote.get(file.path)
            if there is not None and there.blake3 == file.blake3:
                continue
            if file.lfs or file.size > INLINE_MAX:
                value = {"path": file.path, "algo": "sha256", "oid": file.sha256, "size": file.size}
                lines.append({"key": "lfsFile", "value": value})
            else:
                content = base64.b64encode(file.source.read_bytes()).decode()
                value = {"path": file.path, "content": content, "encoding": "base64"}
                lines.append({"key": "file", "value": value})
        for path in sorted(set(remote) - ours):
            lines.append({"key": "deletedFile", "value": {"path": path}})
        return lines

    def _set_tag(self, commit: PushCommit, tag: str) -> None:
        remote = self._book.for_tag(commit.commit, tag)
        if remote is None:
            return
        try:
            self._client.hub("POST", f"{self._api(commit)}/tag/{remote}", json={"tag": tag})
        except ConflictError:
            pass  # already tagged

    def head(self, repo_type: str, repo: str, ref: str) -> RemoteHead | None:
        try:
            remote = self._client.manifest(repo_type, repo, short_ref(ref)).commit
            ours = self._book.ours(remote)
            if ours is None:  # not pushed from this node's history: does it name one of ours?
                path = f"/api/{repo_type}s/{repo}/commits/{remote}"
                first = self._client.hub("GET", path).json()[0]
                ours = carried(str(first.get("message", ""))) if first["id"] == remote else None
        except (RevisionNotFoundError, NotFoundError):
            return None
        return RemoteHead(remote, ours)

    def keep(self, repo_type: str, repo: str, ref: str, head: RemoteHead) -> str:
        for name in recovered_branches(ref):
            path = f"/api/{repo_type}s/{repo}/branch/{quote(name, safe='')}"
            try:
                self._client.hub("POST", path, json={"startingPoint": head.remote})
                return name
            except ConflictError:  # the name is taken: by this head (kept before)?
                there = self.head(repo_type, repo, f"refs/heads/{name}")
                if there is not None and there.remote == head.remote:
                    return name
        raise AssertionError("recovered_branches ends by raising")

    def delete_ref(self, repo_type: str, repo: str, ref: str) -> None:
        kind, _, short = ref.removeprefix("refs/").partition("/")
        route = {"heads": "branch", "tags": "tag"}.get(kind)
        if route is None:
            return
        try:
            self._client.hub("DELETE", f"/api/{repo_type}s/{repo}/{route}/{quote(short, safe='')}")
        except NotFoundError:
            pass  # already gone
