"""What the pages of a repo show, gathered for the page routes: files with their scan verdicts
and hashes, branches and tags, the model's facts, sample images, relatives, where else the repo
lives, a preview of one file, a page of history, and an owner's repos.

Every read is bounded and indexed (the commit's tree, this repo's refs, the search index), so
a page costs the same on a node of 100 000 repos; nothing here reads all repos. Reads use the
viewer's permissions: a private repo is not found, and search leaves out what they may not see.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.access import Principal
from registry.domain.commit import TreeEntry
from registry.domain.errors import BlobNotFoundError, NotFoundError
from registry.domain.names import NAME_PART, RESERVED_NAMESPACES, RepoId, short_ref
from registry.domain.records import CommitRecord
from registry.domain.search import SearchQuery
from registry.metadata.images import Usage
from registry.service.cards import Card, WeightsSummary
from registry.service.family import Family, FamilyService
from registry.service.lookup import autov2
from registry.service.madewith import MadeWithService, RepoImage
from registry.service.model_metadata import ModelMetadata, ModelMetadataService
from registry.service.reads import ReadService, Snapshot
from registry.service.scanning import SCANNED, ScanService, Verdict
from registry.service.search import SearchHit, SearchService
from registry.service.whereabouts import Home, Place, WhereaboutsService
from registry.storage import BlobStore

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MAX_GALLERY = 24
MAX_REFS = 100
PREVIEW_BYTES = 256 * 1024
HISTORY_PAGE = 50
AUTHOR_PAGE = 50
MAX_PAGE = 2000  # deeper pages are refused, not computed
FLAGGED = ("unsafe", "error")  # verdicts a reader must be warned about (shown, never hidden)


@dataclass(frozen=True)
class FileRow:
    entry: TreeEntry
    verdict: Verdict | None  # None: a kind of file that is not scanned

    @property
    def autov2(self) -> str:
        return autov2(self.entry.sha256)

    @property
    def flagged(self) -> bool:
        return self.verdict is not None and self.verdict.status in FLAGGED


@dataclass(frozen=True)
class Header:
    """What every page of a repo shows above its content."""

    snap: Snapshot
    revision: str
    refs: list[str]  # branch and tag names to switch to
    home: Home | None  # another node is the repo's home


@dataclass(frozen=True)
class RepoView:
    header: Header
    card: Card
    metadata: ModelMetadata
    weights: WeightsSummary | None
    files: list[FileRow]
    gallery: list[str]  # paths of sample images
    family: Family
    places: list[Place]
    made: dict[str, RepoImage]  # the gallery's images' generation data, by path
    used: Usage  # images of public repos here that used its model files

    @property
    def flagged(self) -> list[FileRow]:
        return [f for f in self.files if f.flagged]


@dataclass(frozen=True)
class Preview:
    kind: str  # text | image | binary | missing (the bytes are not on this node yet)
    text: str = ""
    cut: bool = False  # the text is the first PREVIEW_BYTES of the file


@dataclass(frozen=True)
class History:
    commits: list[CommitRecord]
    page: int
    more: bool

    @property
    def start(self) -> int:
        """The number of the page's first commit, counting from the newest."""
        return (self.page - 1) * HISTORY_PAGE + 1


@dataclass(frozen=True)
class Authored:
    models: list[SearchHit]
    datasets: list[SearchHit]
    page: int
    more: bool


class RepoPageService:
    def __init__(
        self,
        reads: ReadService,
        scans: ScanService,
        metadata: ModelMetadataService,
        family: FamilyService,
        whereabouts: WhereaboutsService,
        search: SearchService,
        blobs: BlobStore,
        madewith: MadeWithService,
    ) -> None:
        self._madewith = madewith
        self._reads = reads
        self._scans = scans
        self._metadata = metadata
        self._family = family
        self._whereabouts = whereabouts
        self._search = search
        self._blobs = blobs

    def header(self, principal: Principal, repo: RepoId, revision: str) -> Header:
        """The repo at `revision` with its branches and tags and its home's state.

        Raises:
            RepoNotFoundError, RevisionNotFoundError.
        """
        snap = self._reads.snapshot(principal, repo, revision)
        names = [
            short_ref(r.name)
            for r in self._reads.refs(principal, repo)
            if r.name.startswith(("refs/heads/", "refs/tags/"))
        ]
        return Header(snap, revision, names[:MAX_REFS], self._whereabouts.home(snap.repo))

    def view(self, principal: Principal, repo: RepoId, revision: str) -> RepoView:
        """Everything the repo page shows at `revision`."""
        header = self.header(principal, repo, revision)
        snap = header.snap
        metadata = self._metadata.describe(snap)
        files = self.files(snap)
        gallery = [f.entry.path for f in files if f.entry.path.lower().endswith(IMAGE_SUFFIXES)]
        return RepoView(
            header,
            self._reads.card(snap.commit.id),
            metadata,
            self._reads.weights(snap.commit.id),
            files,
            gallery[:MAX_GALLERY],
            self._family.of(
                principal,
                repo,
                metadata.lineage,
                [f.entry for f in files if f.entry.path.endswith(SCANNED)],
            ),
            self._whereabouts.places(snap.repo, snap.commit.id),
            {i.path: i for i in self._madewith.images_at(principal, snap, MAX_GALLERY)},
            self._madewith.usage(snap),
        )

    def files(self, snap: Snapshot, folder: str = "") -> list[FileRow]:
        """The commit's files under `folder` ("" = all), each with its scan verdict."""
        prefix = f"{folder}/" if folder else ""
        entries = [f.entry for f in self._reads.tree(snap.commit.id) if f.path.startswith(prefix)]
        scanned = {e.blake3.hex for e in entries if e.path.endswith(SCANNED)}
        verdicts = self._scans.verdicts(scanned)
        return [
            FileRow(e, verdicts[e.blake3.hex] if e.path.endswith(SCANNED) else None)
            for e in entries
        ]

    def file(self, snap: Snapshot, path: str) -> FileRow:
        """Raises: EntryNotFoundError."""
        entry = self._reads.file(snap, path)
        return FileRow(entry, self._scans.verdict_of(entry.path, entry.blake3.hex))

    def preview(self, entry: TreeEntry) -> Preview:
        """The file as a page shows it: an image, or the start of its text."""
        if entry.path.lower().endswith(IMAGE_SUFFIXES):
            return Preview("image")
        if entry.path.endswith(SCANNED):
            return Preview("binary")  # weights: their facts are on the repo page
        try:
            if self._blobs.stat(entry.blake3) is None:
                return Preview("missing")
            end = min(entry.size, PREVIEW_BYTES)
            data = b"".join(self._blobs.open(entry.blake3, 0, end)) if end else b""
        except BlobNotFoundError:
            return Preview("missing")
        if b"\x00" in data[:8192]:
            return Preview("binary")
        return Preview("text", data.decode("utf-8", "replace"), entry.size > PREVIEW_BYTES)

    def history(self, principal: Principal, repo: RepoId, revision: str, page: int) -> History:
        """One page of history from `revision` back, newest first."""
        page = max(1, min(page, MAX_PAGE))
        commits = self._reads.commits(principal, repo, revision)
        start = (page - 1) * HISTORY_PAGE
        return History(
            commits[start : start + HISTORY_PAGE], page, len(commits) > start + HISTORY_PAGE
        )

    def changes(self, snap: Snapshot) -> list[tuple[str, str]]:
        """What the commit did to each path against its parent: (added|removed|changed, path)."""
        ours = self._reads.tree_map(snap.commit.id)
        theirs = self._reads.tree_map(snap.commit.parent) if snap.commit.parent else {}
        changes = [("added", p) for p in ours if p not in theirs]
        changes += [("removed", p) for p in theirs if p not in ours]
        changes += [
            ("changed", p)
            for p in ours
            if p in theirs and ours[p].entry.blake3 != theirs[p].entry.blake3
        ]
        return sorted(changes, key=lambda c: c[1])

    def authored(self, principal: Principal, owner: str, page: int) -> Authored:
        """The repos of a user or organization that the viewer may see, from the search index
        (repos it has not caught up with are found too).

        Raises:
            NotFoundError: a reserved name, or nothing of `owner`'s to show.
        """
        if owner.lower() in RESERVED_NAMESPACES or not NAME_PART.match(owner):
            raise NotFoundError(f"No page at /{owner}")
        page = max(1, min(page, MAX_PAGE))
        found = [
            self._search.search(
                principal,
                SearchQuery(kind, author=owner, offset=(page - 1) * AUTHOR_PAGE, limit=AUTHOR_PAGE),
            )
            for kind in ("model", "dataset")
        ]
        if page == 1 and not (found[0].hits or found[1].hits):
            raise NotFoundError(f"No user or organization {owner!r} with repos here")
        return Authored(found[0].hits, found[1].hits, page, found[0].more or found[1].more)
