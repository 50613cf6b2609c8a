"""Push one local folder to several targets at once (a creator without a node of their own).

The folder is hashed once (BLAKE3 and SHA-256 in one pass per file); then every target gets
the same commit concurrently, each with its own token, and each reports its own result (the
commit it made): one target being down never stops the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import blake3

from mirror.build import build_target
from mirror.targets import PushCommit, PushFile, Target
from registry.domain.digest import Hasher
from registry.domain.errors import InvalidError, RegistryError
from registry.domain.names import check_repo_path
from registry.domain.patterns import DEFAULT_GITATTRIBUTES, lfs_spec

READ_SIZE = 4 * 1024 * 1024
LFS_OVER = 10 * 1024 * 1024  # the Hub's rule: larger files go through LFS
SKIPPED_DIRS = {".git", ".cache", ".modelyard", "__pycache__"}


@dataclass(frozen=True)
class TargetResult:
    target: str
    ok: bool
    detail: str  # the commit id the target made (a bucket: ours), or why it failed


class _Produced:
    """The `RemoteCommits` of one push: keeps the commit a node or Hub target made for ours."""

    def __init__(self) -> None:
        self.remote: str | None = None

    def remote_commit(self, mirror: str, commit_id: str) -> str | None:  # noqa: ARG002
        return None

    def local_commit(self, mirror: str, remote_id: str) -> str | None:  # noqa: ARG002
        return None

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None:  # noqa: ARG002
        self.remote = remote_id


def hash_file(path: Path, on_bytes: Callable[[int], object] | None = None) -> tuple[str, str, int]:
    hasher = Hasher()
    with path.open("rb") as f:
        while chunk := f.read(READ_SIZE):
            hasher.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    hashes = hasher.result()
    return hashes.blake3.hex, hashes.sha256, hashes.size


def snapshot_folder(
    folder: Path,
    repo: str,
    *,
    message: str,
    repo_type: str = "model",
    on_bytes: Callable[[int], object] | None = None,
) -> PushCommit:
    """Every file under `folder` (skipping .git and caches), hashed, as one commit."""
    if not folder.is_dir():
        raise InvalidError(f"{folder} is not a folder")
    lfs = lfs_spec(DEFAULT_GITATTRIBUTES)
    files: list[PushFile] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if SKIPPED_DIRS & set(relative.parts[:-1]):
            continue
        name = check_repo_path(relative.as_posix())
        b3, sha256, size = hash_file(path, on_bytes)
        large = size > LFS_OVER or lfs.match_file(name)
        files.append(PushFile(name, size, b3, sha256, large, path))
    if not files:
        raise InvalidError(f"{folder} holds no files to push")
    content = json.dumps([repo_type, repo, message, [(f.path, f.blake3) for f in files]])
    commit = blake3.blake3(content.encode()).hexdigest()[:40]
    return PushCommit(repo_type, repo, commit, None, message, int(time.time() * 1000), tuple(files))


def target_for(
    spec: str, token: str | None, produced: _Produced | None = None
) -> tuple[Target, str | None]:
    """A target from `http(s)://node`, `s3://bucket/prefix` or `hf:org/name` (that repo).

    Args:
        token: the target's token; for a Hub without one, HF_TOKEN or the saved login.
    """
    if spec.startswith("s3://"):
        return build_target("s3", spec, spec, None, None), None
    if spec.startswith("hf:"):
        repo = spec[3:]
        if repo.count("/") != 1:
            raise InvalidError(f"A Hub target is hf:org/name, got {spec!r}")
        return build_target("hf", spec, None, token, produced), repo  # at HF_ENDPOINT
    if spec.startswith(("http://", "https://")):
        return build_target("node", spec, spec.rstrip("/"), token, produced), None
    raise InvalidError(
        f"Unknown target {spec!r}: use http(s)://node, s3://bucket/prefix or hf:org/name"
    )


def push_to(spec: str, commit: PushCommit, token: str | None) -> TargetResult:
    produced = _Produced()
    try:
        target, repo = target_for(spec, token, produced)
        pushed = replace(commit, repo=repo) if repo else commit
        target.push_commit(pushed)
        target.set_ref(pushed, "refs/heads/main")
    except RegistryError as exc:
        return TargetResult(spec, False, f"{exc.code}: {exc.message}")
    except Exception as exc:  # any failure of one target is that target's result
        return TargetResult(spec, False, f"{type(exc).__name__}: {exc}")
    return TargetResult(spec, True, produced.remote or commit.commit)


def push_folder(
    commit: PushCommit, targets: Sequence[str], tokens: Mapping[str, str | None]
) -> list[TargetResult]:
    """Push a snapshot to every target concurrently, each with its token in `tokens` (by
    target); results in the order given."""
    if not targets:
        raise InvalidError("Give at least one target (--to)")
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(lambda spec: push_to(spec, commit, tokens.get(spec)), targets))
