"""The resilient downloader: a repo or one file from whichever source is alive, every byte
verified.

Theory of operation: sources are probed at once and ordered healthy-first (then by how often
they failed during this download). The manifest comes from the first source that resolves
the revision; it names every file's size and hashes. Each file is fetched into a partial file
named by its hash under `<dest>/.modelyard/`, by parallel ranges when large (finished ranges
are recorded, so an interrupted download resumes where it stopped, from any source), then
hashed whole and moved into place only if it matches. A source that sends wrong bytes is
counted and the file is fetched again from the next one. When every source fails, one
AllSourcesFailedError names each source and why it failed.

Before any byte is fetched, the first node source that answers says which files its scanner
flagged (`unsafe` or `error`) in the commit; S3 and Hub sources know no verdicts, so with no node
the result says the verdicts are unknown rather than guessing. `refuse_unsafe` skips the flagged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import blake3
import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from mirror.sources import (
    FlaggedFile,
    Location,
    ScanningSource,
    ScanReport,
    Source,
    parse_source,
)
from registry.client import RetryPolicy
from registry.client.client import TransientError
from registry.client.diskwrites import pwrite_all
from registry.client.streaming import RangeSink, StreamFailedError, stream_to_file
from registry.domain.digest import git_blob_sha1
from registry.domain.errors import (
    AllSourcesFailedError,
    InvalidPathError,
    RegistryError,
    UpstreamError,
)
from registry.domain.manifest import Manifest, ManifestFile

logger = logging.getLogger(__name__)
PARTIAL_DIR = ".modelyard"
MIN_RANGE = 8 * 1024 * 1024  # parallel ranges: between these sizes, one per stream or more
MAX_RANGE = 128 * 1024 * 1024
STREAM_MIN = 64 * 1024 * 1024  # fresh files this large are hashed as they land
TRANSIENT = (httpx.TransportError, TransientError, UpstreamError, OSError)


@dataclass(frozen=True)
class Progress:
    path: str
    done: int  # bytes of this file on disk so far
    total: int
    source: str


@dataclass
class DownloadResult:
    repo: str
    commit: str  # as the manifest's source named it
    manifest_source: str
    files: dict[str, Path] = field(default_factory=dict)  # repo path -> local file
    fetched_bytes: int = 0  # bytes received in this call (resumed bytes not counted)
    sources_used: dict[str, str] = field(default_factory=dict)  # repo path -> source name
    scan: ScanReport | None = None  # None: no source knew the scan verdicts
    flagged: dict[str, FlaggedFile] = field(default_factory=dict)  # among the files asked for
    refused: list[str] = field(default_factory=list)  # flagged paths not downloaded


def _failures_error(what: str, failures: list[tuple[str, str]]) -> AllSourcesFailedError:
    lines = "; ".join(f"{name}: {why}" for name, why in failures)
    return AllSourcesFailedError(
        f"{what}: every source failed ({lines})",
        detail={"failures": [{"source": n, "error": w} for n, w in failures]},
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class Downloader:
    """Downloads from an ordered list of sources (`http(s)://node`, `s3://bucket/prefix`,
    `hf:org/name`, or Source objects); a context manager."""

    def __init__(
        self,
        sources: Sequence[str | Source],
        *,
        token: str | None = None,
        parallel: int | None = None,
        retry: RetryPolicy | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        if not sources:
            raise UpstreamError("A download needs at least one source")
        self._sources = [parse_source(s, token) if isinstance(s, str) else s for s in sources]
        # One stream per core measured best on loopback (the server needs CPU too).
        self._parallel = max(1, parallel or min(8, os.cpu_count() or 2))
        self._retry = retry or RetryPolicy(attempts=3)
        self._progress = progress
        self._failures: dict[str, int] = {}
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *_: object) -> None:
        for source in self._sources:
            source.close()

    def _probe(self) -> None:
        def probe(source: Source) -> str | None:
            try:
                source.probe()
            except Exception:  # any failure only moves it to the back
                return source.name
            return None

        with ThreadPoolExecutor(max_workers=len(self._sources)) as pool:
            self._down = {n for n in pool.map(probe, self._sources) if n is not None}

    def _ordered(self) -> list[Source]:
        rank = {s.name: i for i, s in enumerate(self._sources)}
        return sorted(
            self._sources,
            key=lambda s: (s.name in self._down, self._failures.get(s.name, 0), rank[s.name]),
        )

    def _failed(self, source: Source) -> None:
        with self._lock:
            self._failures[source.name] = self._failures.get(source.name, 0) + 1

    def resolve(
        self, repo: str, revision: str = "main", repo_type: str = "model"
    ) -> tuple[Manifest, str]:
        """The manifest of repo@revision from the first source that has it, and its name."""
        self._probe()
        failures: list[tuple[str, str]] = []
        for source in self._ordered():
            try:
                return source.resolve(repo_type, repo, revision), source.name
            except Exception as exc:  # any failure: the next source
                self._failed(source)
                failures.append((source.name, _why(exc)))
        raise _failures_error(f"resolving {repo}@{revision}", failures)

    def scan_report(self, repo: str, commit: str, repo_type: str = "model") -> ScanReport | None:
        """The scan verdicts for repo@commit from the first node source that gives them, or
        None when no source knows them (S3 and Hub sources never do)."""
        for source in self._ordered():
            if not isinstance(source, ScanningSource):
                continue
            try:
                return source.scan_report(repo_type, repo, commit)
            except Exception as exc:  # this node cannot tell: ask the next one
                logger.info("no scan verdicts source=%s error=%s", source.name, exc)
        return None

    def download_repo(
        self,
        repo: str,
        to: Path,
        *,
        revision: str = "main",
        repo_type: str = "model",
        allow: Sequence[str] = (),
        refuse_unsafe: bool = False,
    ) -> DownloadResult:
        """Every file of repo@revision (or those matching `allow` globs) into `to`; files a
        node flagged unsafe (or could not scan) are in `result.flagged`, and with
        `refuse_unsafe` they are not downloaded but listed in `result.refused`."""
        manifest, origin = self.resolve(repo, revision, repo_type)
        result = DownloadResult(repo, manifest.commit, origin)
        where = Location(repo_type, repo, revision)
        wanted = [
            f for f in manifest.files if not allow or any(fnmatchcase(f.path, g) for g in allow)
        ]
        result.scan = self.scan_report(repo, manifest.commit, repo_type)
        flagged = result.scan.flagged if result.scan else ()
        names = {f.path for f in wanted}
        result.flagged = {f.path: f for f in flagged if f.path in names}
        for file in wanted:
            if refuse_unsafe and file.path in result.flagged:
                result.refused.append(file.path)
                continue
            result.files[file.path] = self._file(file, where, Path(to), result)
        return result

    def download_file(
        self, repo: str, path: str, to: Path, *, revision: str = "main", repo_type: str = "model"
    ) -> Path:
        """One file of repo@revision into `to` (keeping its repo path); returns the file."""
        manifest, origin = self.resolve(repo, revision, repo_type)
        chosen = next((f for f in manifest.files if f.path == path), None)
        if chosen is None:
            raise AllSourcesFailedError(f"{origin} lists no {path!r} in {repo}@{revision}")
        result = DownloadResult(repo, manifest.commit, origin)
        return self._file(chosen, Location(repo_type, repo, revision), Path(to), result)

    def _file(self, file: ManifestFile, where: Location, to: Path, result: DownloadResult) -> Path:
        final = _inside(to, file.path)
        fetched = self.fetch_to(file, where, final, to / PARTIAL_DIR)
        if fetched is not None:
            result.sources_used[file.path], received = fetched
            result.fetched_bytes += received
        return final

    def live(self) -> list[Source]:
        """The sources that answer a probe now, in the order downloads try them."""
        self._probe()
        return [s for s in self._ordered() if s.name not in self._down]

    def fetch_to(
        self, file: ManifestFile, where: Location, final: Path, partials: Path
    ) -> tuple[str, int] | None:
        """One file into `final` (the caller checked where that is), its partial kept under
        `partials` until it verifies; None when `final` already holds the right bytes, else
        the source that sent them and how many bytes all attempts received now.

        Raises:
            AllSourcesFailedError: no source sent the right bytes; names each and why.
        """
        if final.exists() and final.stat().st_size == file.size and verified(final, file):
            return None  # already here and correct
        partial = partials / (file.blake3 or file.sha256 or file.git_sha1 or "x")
        partial.parent.mkdir(parents=True, exist_ok=True)
        failures: list[tuple[str, str]] = []
        received = 0  # by every attempt, wrong bytes included
        for source in self._ordered():
            try:
                count, hashed = self._fetch(source, file, where, partial)
                received += count
            except Exception as exc:  # this source failed for this file: the next one
                self._failed(source)
                failures.append((source.name, _why(exc)))
                logger.warning(
                    "download failed source=%s path=%s error=%s", source.name, file.path, exc
                )
                continue
            if not (hashed == file.blake3 if hashed else verified(partial, file)):
                self._failed(source)
                failures.append(
                    (source.name, f"DigestMismatch: {file.path} did not match the manifest")
                )
                logger.warning("wrong bytes source=%s path=%s", source.name, file.path)
                _discard(partial)
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
            _done_file(partial).unlink(missing_ok=True)
            return source.name, received
        raise _failures_error(f"downloading {file.path}", failures)

    def _spans(self, size: int) -> list[tuple[int, int]]:
        step = min(MAX_RANGE, max(MIN_RANGE, -(-size // self._parallel)))
        return [(s, min(s + step, size)) for s in range(0, size, step)]

    def _fetch(
        self, source: Source, file: ManifestFile, where: Location, partial: Path
    ) -> tuple[int, str | None]:
        """Fill `partial` with the file's bytes; returns how many were received now, and the
        BLAKE3 of the file when it was hashed on the way (else None: hash it afterwards)."""
        spans = self._spans(file.size)
        ledger = Ledger.load(partial, spans)
        if ledger.total() == 0 and file.blake3 and file.size >= STREAM_MIN:
            return file.size, self._stream(source, file, where, partial, ledger)
        before = ledger.total()
        with partial.open("r+b" if partial.exists() else "w+b") as out:
            out.truncate(file.size)
            todo = [span for span in spans if ledger.left(span)]
            workers = min(self._parallel, max(1, len(todo)))
            try:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = [
                        pool.submit(self._range, source, file, where, out.fileno(), span, ledger)
                        for span in todo
                    ]
                    for future in futures:
                        future.result()
            finally:
                ledger.save()
        return ledger.total() - before, None

    def _stream(
        self, source: Source, file: ManifestFile, where: Location, partial: Path, ledger: Ledger
    ) -> str:
        """A fresh large file, hashed in order as it lands (registry.client.streaming); on
        failure the ledger records the good prefix, so the next attempt resumes after it."""
        done = [0]

        def fetch(span: tuple[int, int], sink: RangeSink) -> None:
            for attempt in self._retrying():
                with attempt:  # a retry resumes after the bytes already received
                    source.read_into(file, where, (sink.position, span[1]), sink)

        def landed(count: int) -> None:
            done[0] += count
            self._report(file, source, done[0])

        with partial.open("w+b") as out:
            try:
                return stream_to_file(out.fileno(), file.size, fetch, self._parallel, landed)
            except StreamFailedError as exc:
                ledger.record_prefix(exc.prefix)
                ledger.save()
                raise exc.cause from None

    def _retrying(self) -> Retrying:
        policy = self._retry
        return Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_after_attempt(policy.attempts),
            wait=wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
            reraise=True,
        )

    def _range(
        self,
        source: Source,
        file: ManifestFile,
        where: Location,
        fd: int,
        span: tuple[int, int],
        ledger: Ledger,
    ) -> None:
        """One range, resumed where it stopped and retried on transient failures."""
        for attempt in self._retrying():
            with attempt:

                def write(offset: int, data: memoryview) -> None:
                    pwrite_all(fd, data, offset)
                    ledger.advance(span, len(data))
                    self._report(file, source, ledger.total())

                start = span[0] + ledger.written(span)
                source.read_into(file, where, (start, span[1]), write)

    def _report(self, file: ManifestFile, source: Source, done: int) -> None:
        if self._progress is not None:
            self._progress(Progress(file.path, done, file.size, source.name))


def _inside(root: Path, path: str) -> Path:
    """The local file for a repo path, refusing anything that would land outside `root`."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or PARTIAL_DIR in Path(path).parts:
        raise InvalidPathError(f"Refusing to write {path!r} outside {root}")
    return target


def _done_file(partial: Path) -> Path:
    return partial.with_name(partial.name + ".done")


class Ledger:
    """How many bytes of each range of a partial file are on disk (saved beside it every few
    MiB and when a fetch stops), so a download resumes where it stopped, from any source."""

    SAVE_EVERY = 8 * 1024 * 1024

    def __init__(
        self, partial: Path, written: dict[int, int], spans: list[tuple[int, int]]
    ) -> None:
        self._path = _done_file(partial)
        self._spans = spans
        self._written = written
        self._lock = threading.Lock()
        self._unsaved = 0

    @classmethod
    def load(cls, partial: Path, spans: list[tuple[int, int]]) -> Ledger:
        written: dict[int, int] = {}
        try:
            if partial.exists():
                saved = json.loads(_done_file(partial).read_text())
                limits = dict(spans)
                written = {
                    int(k): min(int(v), limits[int(k)] - int(k))
                    for k, v in saved.items()
                    if int(k) in limits
                }
        except (OSError, ValueError, AttributeError):
            written = {}
        return cls(partial, written, spans)

    def written(self, span: tuple[int, int]) -> int:
        return self._written.get(span[0], 0)

    def left(self, span: tuple[int, int]) -> bool:
        return span[0] + self.written(span) < span[1]

    def total(self) -> int:
        return sum(self._written.values())

    def record_prefix(self, prefix: int) -> None:
        """The first `prefix` bytes are on disk (a streamed download stopped there)."""
        with self._lock:
            for start, end in self._spans:
                self._written[start] = max(0, min(end, prefix) - start)

    def advance(self, span: tuple[int, int], count: int) -> None:
        with self._lock:
            self._written[span[0]] = self._written.get(span[0], 0) + count
            self._unsaved += count
            if self._unsaved >= self.SAVE_EVERY:
                self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        staged = self._path.with_name(self._path.name + ".tmp")
        staged.write_text(json.dumps({str(k): v for k, v in self._written.items()}))
        os.replace(staged, self._path)
        self._unsaved = 0


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _done_file(partial).unlink(missing_ok=True)


def verified(path: Path, file: ManifestFile) -> bool:
    """Does the file hash to what the manifest says (BLAKE3, else SHA-256, else git id)?"""
    if path.stat().st_size != file.size:
        return False
    if file.blake3:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        if file.size:
            hasher.update_mmap(str(path))
        return bool(hasher.hexdigest() == file.blake3)
    if file.sha256:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == file.sha256
    return git_blob_sha1(path.read_bytes()) == file.git_sha1


def download_repo(
    spec: str,
    to: Path | str,
    sources: Sequence[str | Source],
    *,
    token: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    allow: Sequence[str] = (),
    refuse_unsafe: bool = False,
) -> DownloadResult:
    """`download_repo("alice/my-lora@v1", "./my-lora", ["http://node:8000", "s3://b/p"])`;
    `refuse_unsafe=True` skips the files a node flagged (see `DownloadResult.refused`)."""
    repo, _, revision = spec.partition("@")
    with Downloader(sources, token=token, progress=progress) as downloader:
        return downloader.download_repo(
            repo, Path(to), revision=revision or "main", allow=allow, refuse_unsafe=refuse_unsafe
        )
