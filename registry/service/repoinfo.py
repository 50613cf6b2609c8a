"""A repo's info as the Hub serves it (`model_info`, `dataset_info`), answered from the read
cache when the commit was seen before.

Theory of operation: the answer for a commit depends on the commit (immutable), the repo's
visibility and gate, whether blob details were asked for, and three things that move on their
own: scan verdicts, download counts and the images read (`used_by`). `key` names exactly
these, and the encoded answer is cached under it (`ReadCache.responses`); both the regular
route and the HTTP fast path use the one key, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from registry.domain.access import Principal
from registry.domain.names import RepoId, RepoType
from registry.service.downloads import DownloadCounter
from registry.service.files import Replica, replica_of
from registry.service.identity import NodeIdentity
from registry.service.images import ImageService
from registry.service.madewith import MadeWithService
from registry.service.model_metadata import ModelMetadataService
from registry.service.offload import on_thread
from registry.service.peers import PeerService
from registry.service.reads import ReadService, Snapshot
from registry.service.scanning import SCANNED, ScanService
from registry.wire import (
    FileIssue,
    LinkOut,
    ModelMetadataOut,
    RepoInfo,
    SafetensorsOut,
    SecurityStatus,
    Sibling,
    SiblingLfs,
    UsageOut,
    WorkflowFileOut,
    iso_ms,
)


@dataclass(frozen=True)
class InfoAnswer:
    body: bytes  # RepoInfo as JSON, without null fields
    replica: Replica | None


class RepoInfoService:
    def __init__(
        self,
        node: NodeIdentity,
        reads: ReadService,
        metadata: ModelMetadataService,
        scans: ScanService,
        counter: DownloadCounter,
        peers: PeerService,
        images: ImageService,
        madewith: MadeWithService,
    ) -> None:
        self._node = node
        self._images = images
        self._madewith = madewith
        self._reads = reads
        self._metadata = metadata
        self._scans = scans
        self._counter = counter
        self._peers = peers

    def key(self, snap: Snapshot, blobs: bool) -> tuple[object, ...]:
        """What the cached answer for a snapshot depends on (its id too: a repo may move)."""
        return (
            "info",
            snap.repo.key,
            snap.commit.id,
            snap.repo.private,
            snap.repo.gated,
            blobs,
            self._scans.version,
            self._counter.version,
            self._images.version,
        )

    async def cached(
        self, principal: Principal, repo: RepoId, revision: str, blobs: bool
    ) -> bytes | None:
        """The answer if it is cached and needs no replica headers; else None. Awaits only a
        look at a shared database's write generation."""
        snap = await self._reads.cached_snapshot(principal, repo, revision)
        if snap is None or snap.repo.home_node != self._node.node_id:
            return None
        return self._reads.cache.responses.get(self.key(snap, blobs))

    async def info(
        self, principal: Principal, repo: RepoId, revision: str, blobs: bool
    ) -> InfoAnswer:
        """The repo's info at `revision`; `blobs` adds sizes and hashes of its files.

        Raises:
            RepoNotFoundError, RevisionNotFoundError.
        """
        snap = await self._reads.cached_snapshot(principal, repo, revision)
        if snap is None:
            snap = await on_thread(self._reads.snapshot, principal, repo, revision)
        key = self.key(snap, blobs)
        body = self._reads.cache.responses.get(key)
        if body is None:
            info = await on_thread(self._build, snap, blobs)
            body = self._reads.cache.responses.put(
                key, info.model_dump_json(exclude_none=True).encode()
            )
        return InfoAnswer(body, replica_of(self._peers, self._node, snap.repo))

    def _build(self, snap: Snapshot, blobs: bool) -> RepoInfo:
        rid = snap.repo.repo
        siblings = []
        for file in self._reads.tree(snap.commit.id):
            sibling = Sibling(rfilename=file.path)
            if blobs:
                entry = file.entry
                sibling.size, sibling.blobId = entry.size, entry.oid
                if entry.lfs:
                    sibling.lfs = SiblingLfs(
                        size=entry.size, sha256=entry.sha256, pointerSize=len(entry.pointer)
                    )
            siblings.append(sibling)
        card, weights = self._reads.card(snap.commit.id), self._reads.weights(snap.commit.id)
        return RepoInfo(
            id=rid.full_name,
            modelId=rid.full_name if rid.type is RepoType.MODEL else None,
            author=rid.namespace,
            sha=snap.commit.id,
            private=snap.repo.private,
            gated=snap.repo.gated or False,
            lastModified=iso_ms(snap.commit.created_ms),
            createdAt=iso_ms(snap.repo.created_ms),
            downloads=snap.repo.downloads,
            tags=card.tags,
            securityRepoStatus=self._security_status(snap),
            modelyard=ModelMetadataOut.model_validate(
                asdict(self._metadata.describe(snap))
                | {"used_by": self._usage(snap), "workflows": self._workflows(snap)}
            ),
            cardData=card.data or None,
            safetensors=SafetensorsOut(parameters=weights.parameters, total=weights.total)
            if weights
            else None,
            siblings=siblings,
        )

    def _usage(self, snap: Snapshot) -> UsageOut | None:
        """Images that used this model's files; None for other repos and unused models."""
        if snap.repo.repo.type is not RepoType.MODEL:
            return None
        used = self._madewith.usage(snap)
        if not used.images:
            return None
        weights = None if used.low is None or used.high is None else [used.low, used.high]
        return UsageOut(images=used.images, weights=weights)

    def _workflows(self, snap: Snapshot) -> list[WorkflowFileOut] | None:
        """The repo's ComfyUI workflow files and what each needs; None when it holds none."""
        found = self._madewith.workflows_at(snap)
        if not found:
            return None
        return [
            WorkflowFileOut(
                path=path,
                requirements=[LinkOut.model_validate(asdict(link)) for link in links],
            )
            for path, links in found
        ]

    def _security_status(self, snap: Snapshot) -> SecurityStatus:
        """The Hub's `securityRepoStatus`: are scans done, and which files have issues."""
        files = {
            p: f.entry.blake3.hex
            for p, f in self._reads.tree_map(snap.commit.id).items()
            if p.endswith(SCANNED)
        }
        verdicts = self._scans.verdicts(set(files.values()))
        issues = [
            FileIssue(path=p, status=verdicts[b3].status, findings=verdicts[b3].findings)
            for p, b3 in files.items()
            if verdicts[b3].status in ("unsafe", "error")
        ]
        done = all(v.status != "pending" for v in verdicts.values())
        return SecurityStatus(scansDone=done, filesWithIssues=issues)
