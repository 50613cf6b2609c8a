"""The services of one node that its HTTP API calls, as the runtime built them."""

from __future__ import annotations

from dataclasses import dataclass

from registry.service.auth import AuthService
from registry.service.commits import CommitService
from registry.service.discussions import DiscussionService
from registry.service.feed import FeedService
from registry.service.files import FileService
from registry.service.identity import NodeIdentity
from registry.service.lineage import LineageService
from registry.service.lookup import LookupService
from registry.service.madewith import MadeWithService
from registry.service.mirrors import MirrorService
from registry.service.model_metadata import ModelMetadataService
from registry.service.orgs import OrgService
from registry.service.peers import PeerService
from registry.service.reads import ReadService
from registry.service.repoinfo import RepoInfoService
from registry.service.repopage import RepoPageService
from registry.service.repos import RepoService
from registry.service.rewrite import RewriteService
from registry.service.search import SearchService
from registry.service.settings import RepoSettingsService
from registry.service.snapshot import SnapshotService
from registry.service.status import StatusService
from registry.service.uploads import UploadService
from registry.service.workflows import WorkflowService
from registry.service.xet import XetService
from registry.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    identity: NodeIdentity
    auth: AuthService
    orgs: OrgService
    repos: RepoService
    reads: ReadService
    repoinfo: RepoInfoService
    commits: CommitService
    rewrite: RewriteService
    discussions: DiscussionService
    uploads: UploadService
    files: FileService
    peers: PeerService
    feed: FeedService
    snapshots: SnapshotService
    status: StatusService
    lookup: LookupService
    lineage: LineageService
    search: SearchService
    model_metadata: ModelMetadataService
    mirrors: MirrorService
    xet: XetService
    repo_settings: RepoSettingsService
    repo_pages: RepoPageService
    madewith: MadeWithService
    workflows: WorkflowService
