"""Pulling every model a ComfyUI workflow needs into ComfyUI's layout (`DIR/models/<folder>/`).

A node resolves the workflow (`POST /v1/workflows/resolve`); each resolved file is then fetched
by the `Downloader`, so it comes from whichever source has it (nodes, peers, S3 mirrors) and
is verified by BLAKE3 before it is moved into place. Names come from the workflow and the node,
so each local path is checked again here: it must stay inside `DIR/models`.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mirror.downloader import PARTIAL_DIR, Downloader, verified
from mirror.sources import Location, NodeSource
from registry.domain.errors import (
    InvalidError,
    InvalidPathError,
    RegistryError,
    UpstreamError,
    WorkflowTooLargeError,
)
from registry.domain.manifest import ManifestFile
from registry.domain.workflow import MAX_BYTES, model_name, with_extension
from registry.service.imagemeta import embedded_workflow
from registry.wire import WorkflowCandidateOut, WorkflowRequirementOut

FLAGGED = ("unsafe", "error")  # verdicts `refuse_unsafe` skips, as `modelyard pull` does
OK = ("downloaded", "present", "planned")
_REMOTE = re.compile(r"^(?P<repo>[^/@:\s]+/[^/@:\s]+)(?:@(?P<rev>[^:\s]+))?:(?P<path>.+)$")
_PNG = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a workflow in a PNG on a node: the image fetched first


@dataclass(frozen=True)
class Row:
    """One line of the table a pull prints: a model file and what became of it."""

    folder: str
    filename: str  # under models/<folder>, as the workflow names it
    status: str  # downloaded | present | planned | missing | ambiguous | refused | failed
    source: str = ""  # where the bytes came from (or would be looked for first)
    size: int | None = None
    detail: str = ""


def read_workflow_source(spec: str, downloader: Downloader) -> bytes:
    """A workflow's JSON from a local file, or from `repo[@rev]:path` on the sources: a JSON
    file, or a PNG that embeds one (as ComfyUI saves its images; only its chunks are read).

    Raises:
        WorkflowTooLargeError: a JSON file over the workflow size cap.
        GenerationParseError: a PNG that holds no workflow, or is broken.
    """
    local = Path(spec)
    remote = _REMOTE.match(spec)
    if not local.exists() and remote is not None:
        return _remote_workflow(downloader, remote["repo"], remote["rev"] or "main", remote["path"])
    if not local.is_file():
        raise InvalidError(f"{spec} is neither a workflow file nor REPO[@REV]:PATH")
    return _workflow_json(local, spec)


def _remote_workflow(downloader: Downloader, repo: str, revision: str, path: str) -> bytes:
    manifest, _ = downloader.resolve(repo, revision)
    listed = next((f for f in manifest.files if f.path == path), None)
    if listed is not None and listed.size > MAX_IMAGE_BYTES:
        raise WorkflowTooLargeError(f"{path} is {listed.size} bytes; at most {MAX_IMAGE_BYTES}")
    with tempfile.TemporaryDirectory(prefix="modelyard-workflow-") as tmp:
        got = downloader.download_file(repo, path, Path(tmp), revision=revision)
        return _workflow_json(got, f"{repo}@{revision}:{path}")


def _workflow_json(path: Path, name: str) -> bytes:
    """The file's bytes if it is JSON, the workflow it embeds if it is a PNG."""
    size = path.stat().st_size
    with path.open("rb") as file:
        if file.read(len(_PNG)) == _PNG:
            return json.dumps(embedded_workflow(file, size)).encode()
    if size > MAX_BYTES:
        raise WorkflowTooLargeError(f"{name} is {size} bytes; a workflow is at most {MAX_BYTES}")
    return path.read_bytes()


def first_node(downloader: Downloader) -> NodeSource:
    """The first live source that is a node (only nodes resolve workflows)."""
    for source in downloader.live():
        if isinstance(source, NodeSource):
            return source
    raise UpstreamError("No node among the live sources: a workflow is resolved by a node")


def pull_workflow(
    workflow: bytes,
    comfyui: Path,
    downloader: Downloader,
    *,
    dry_run: bool = False,
    refuse_unsafe: bool = False,
) -> list[Row]:
    """Resolve `workflow` on the first live node and fetch each resolved file into
    `comfyui/models/<folder>/<filename>`; one row per distinct local file, in workflow order.
    With `dry_run` nothing is written (files already present are still recognized)."""
    node = first_node(downloader)
    answer = node.resolve_workflow(workflow)
    models = comfyui / "models"
    rows: dict[tuple[str, str], Row] = {}
    for requirement in answer.requirements:
        key = (requirement.folder, requirement.filename)
        if key not in rows:
            rows[key] = _pull_one(
                requirement, models, downloader, node.name, dry_run, refuse_unsafe
            )
    _remove_if_empty(models / PARTIAL_DIR)
    return list(rows.values())


def _remove_if_empty(directory: Path) -> None:
    """The partial files' directory, once every download in it finished."""
    try:
        directory.rmdir()
    except OSError:  # absent, or holding a partial file a later pull resumes from
        pass


def _pull_one(
    requirement: WorkflowRequirementOut,
    models: Path,
    downloader: Downloader,
    node: str,
    dry_run: bool,
    refuse_unsafe: bool,
) -> Row:
    folder, filename = requirement.folder, requirement.filename
    if requirement.status != "resolved":
        found = ", ".join(f"{c.repo}:{c.path}" for c in requirement.candidates)
        return Row(folder, filename, requirement.status, node, None, found)
    chosen = requirement.candidates[0]
    try:
        final = _local_path(models, folder, with_extension(filename, chosen.path))
    except RegistryError as exc:
        return Row(folder, filename, "refused", node, chosen.size, exc.message)
    if refuse_unsafe and chosen.scan in FLAGGED:
        return Row(folder, filename, "refused", node, chosen.size, f"scan: {chosen.scan}")
    file = ManifestFile(chosen.path, chosen.size, chosen.blake3, chosen.sha256)
    shown = str(final.relative_to((models / folder).resolve()))
    if dry_run:
        here = final.exists() and verified(final, file)
        return Row(folder, shown, "present" if here else "planned", _origin(chosen), chosen.size)
    # Nodes and buckets serve the bytes by BLAKE3; a Hub source reads the path at `main`
    # (the node's commit id means nothing there), and the BLAKE3 check catches a file since
    # changed.
    where = Location("model", chosen.repo, "main")
    try:
        fetched = downloader.fetch_to(file, where, final, models / PARTIAL_DIR)
    except RegistryError as exc:
        return Row(folder, shown, "failed", "", chosen.size, exc.message)
    if fetched is None:
        return Row(folder, shown, "present", "", chosen.size)
    return Row(folder, shown, "downloaded", fetched[0], chosen.size)


def _origin(candidate: WorkflowCandidateOut) -> str:
    return f"{candidate.repo}:{candidate.path}"


def _local_path(models: Path, folder: str, filename: str) -> Path:
    """models/<folder>/<filename>, refusing names that could land anywhere else (checked as
    names, then as the resolved path: a symlink inside DIR/models cannot lead out)."""
    if "/" in model_name(folder) or folder == PARTIAL_DIR:
        raise InvalidPathError(f"Refusing the folder {folder!r}: one folder name is expected")
    relative = f"{folder}/{model_name(filename)}"
    root = models.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or PARTIAL_DIR in Path(relative).parts:
        raise InvalidPathError(f"Refusing to write {relative!r} outside {models}")
    return target
