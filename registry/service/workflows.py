"""Which files on this node a ComfyUI workflow needs: each model it names, matched by file name
to the files at the default branch heads of the model repos the caller may read.

A requirement matches a file whose base name is its own (case-insensitive; an embedding named
without extension matches any model extension). Files whose path ends with the whole name the
workflow uses (`SDXL/base.safetensors`) are preferred over base-name-only matches. One blob
among the matches, in any number of repos, is `resolved`; several are `ambiguous`; none,
`missing`. A PNG body is read for the workflow ComfyUI embeds in the images it saves.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from registry.domain.access import Principal
from registry.domain.errors import UnsupportedMediaTypeError
from registry.domain.workflow import Requirement, Workflow, basenames, parse_workflow, read_workflow
from registry.metadata.commits import RefFile
from registry.metadata.db import Database
from registry.service.imagemeta import embedded_workflow
from registry.service.repos import can_read
from registry.service.scanning import SCANNED, ScanService, Verdict

BRANCH = "refs/heads/main"  # a repo's default branch
MAX_CANDIDATES = 20  # listed per requirement; the status counts them all
_NAMES_PER_QUERY = 4000  # bound parameters; a capped workflow names fewer, so one query
_ROWS_PER_QUERY = 5000
_PNG = b"\x89PNG\r\n\x1a\n"
Status = Literal["resolved", "ambiguous", "missing"]


@dataclass(frozen=True)
class Candidate:
    repo: str
    revision: str  # the commit the default branch points at
    path: str
    blake3: str
    sha256: str
    size: int
    scan: str | None  # pending | clean | unsafe | error; None: a kind of file not scanned


@dataclass(frozen=True)
class Resolution:
    requirement: Requirement
    status: Status
    candidates: tuple[Candidate, ...]


def read_body(content_type: str | None, body: bytes) -> Workflow:
    """The workflow in a body: JSON, or a PNG that embeds one (by its bytes, whatever the
    declared type).

    Raises:
        UnsupportedMediaTypeError: neither JSON nor a PNG.
        GenerationParseError: a PNG that holds no workflow, or is broken.
    """
    media = (content_type or "application/json").partition(";")[0].strip().lower()
    if body.startswith(_PNG):
        return read_workflow(embedded_workflow(io.BytesIO(body), len(body)))
    if media not in ("application/json", "text/plain") and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"A workflow is sent as application/json (or a PNG that embeds one), not {media}",
            detail={"content_type": media},
        )
    return parse_workflow(body)


class WorkflowService:
    def __init__(self, db: Database, scans: ScanService) -> None:
        self._db = db
        self._scans = scans

    def resolve(
        self, principal: Principal, body: bytes, content_type: str | None
    ) -> list[Resolution]:
        """Each model the workflow in `body` needs, with the files that may be it.

        Raises:
            UnsupportedMediaTypeError: the body is neither JSON nor a PNG.
            GenerationParseError: a PNG without a workflow.
            WorkflowInvalidError: not a workflow, or a model name that could escape its folder.
            WorkflowTooLargeError: over one of the workflow caps.
        """
        requirements = read_body(content_type, body).requirements
        files = self._named(principal, {n for r in requirements for n in basenames(r.filename)})
        verdicts = self._scans.verdicts({f.file.entry.blake3.hex for f in files})
        return [_resolution(r, files, verdicts) for r in requirements]

    def _named(self, principal: Principal, names: set[str]) -> list[RefFile]:
        """Files at branch heads with one of these base names, in model repos the caller
        may read (asked in bounded batches of names)."""
        ordered = sorted(names)
        found: list[RefFile] = []
        with self._db.read() as tx:
            for start in range(0, len(ordered), _NAMES_PER_QUERY):
                batch = ordered[start : start + _NAMES_PER_QUERY]
                found += tx.commits.at_heads_named(batch, BRANCH, _ROWS_PER_QUERY)
        return [
            f for f in found if f.repo.repo.type.value == "model" and can_read(principal, f.repo)
        ]


def _resolution(
    requirement: Requirement, files: Sequence[RefFile], verdicts: dict[str, Verdict]
) -> Resolution:
    names = basenames(requirement.filename)
    matches = [f for f in files if f.file.path.rsplit("/", 1)[-1].lower() in names]
    suffixes = tuple(n.removeprefix(names[0]) for n in names)
    whole = requirement.filename.lower()
    exact = [f for f in matches if _ends_with(f.file.path.lower(), whole, suffixes)]
    chosen = exact or matches
    blobs = {f.file.entry.blake3.hex for f in chosen}
    status: Status = "missing" if not blobs else "resolved" if len(blobs) == 1 else "ambiguous"
    return Resolution(
        requirement, status, tuple(_candidate(f, verdicts) for f in chosen[:MAX_CANDIDATES])
    )


def _ends_with(path: str, whole: str, suffixes: tuple[str, ...]) -> bool:
    """Does `path` end with the whole name the workflow uses (plus an extension it left out)?"""
    return any(path == whole + s or path.endswith("/" + whole + s) for s in suffixes)


def _candidate(found: RefFile, verdicts: dict[str, Verdict]) -> Candidate:
    entry = found.file.entry
    scan = verdicts[entry.blake3.hex].status if entry.path.endswith(SCANNED) else None
    return Candidate(
        found.repo.repo.full_name,
        found.ref.commit_id,
        entry.path,
        entry.blake3.hex,
        entry.sha256,
        entry.size,
        scan,
    )
