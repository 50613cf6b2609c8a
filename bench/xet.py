"""Xet against the plain LFS path on one `modelyard serve` (embedded default: SQLite and the data
dir), with the stock client (`huggingface_hub` + `hf_xet`, each step in a new Python process with
a fresh HF_HOME and Xet cache, as on a new machine), all on 127.0.0.1.

Run: `.venv/bin/python bench/xet.py [--size-mib 1024] [--reps 3]` (`--no-record` to skip
RESULTS.md). Each rep starts two fresh nodes, one after the other, each stopped by PID:
- LFS: `upload_file` with HF_HUB_DISABLE_XET=1 (SHA-256, preupload, LFS PUT, commit);
- Xet: `upload_file` with the client's defaults; the node's blob store (`store/blobs`, du)
  after it; a download through Xet (`hf_hub_download`, checked by BLAKE3) and a plain one
  (`curl` of /resolve, which the node rebuilds from the xorbs); then edited copies uploaded
  into the same repo from fresh homes through a loopback proxy that counts what the client
  sends (tests/byteproxy.py): 1 KiB changed in the middle, and the safetensors header's
  metadata grown; the blob store again after each.
The file is a .safetensors of float32 tensors of 4 MiB: random bytes, except that every fourth
tensor has the same top byte in each float (similar magnitudes), which the client's BG4+LZ4
compresses by about a quarter (the whole file by about 5 %). Upload and download times are
taken inside the client process around the one call (not the interpreter's start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _procs
import blake3
import httpx
from _clients import BenchError, curl_get
from _report import append_results, git_version
from transfer import node_version, print_logs

from registry.domain.xet.chunking import chunk_boundaries
from tests.byteproxy import ByteCountingProxy

MIB = 1 << 20
MB = 1e6
GB = 1e9
TENSOR = 4 * MIB  # one float32 tensor of 1024 x 1024
EDIT = 1024
NAME = "model.safetensors"
CLIENT_TIMEOUT = 1800  # seconds for one client step
WINDOW = 2 * MIB  # bytes each side of the edit chunked to find the changed chunks
UPLOAD_GOAL = 0.8  # Xet upload speed / LFS upload speed, at least
EDIT_TIME_GOAL = 0.1  # edited copy's upload time / first upload's time, at most
DISK_GOAL = 1.1  # two versions / (one version + the changed chunks), at most
SENT_GOAL = 0.05  # share of the file an edited copy may send (tests/integration/test_xet_dedup)
OLD_METADATA = {"format": "pt"}
NEW_METADATA = {"format": "pt", "description": "fine-tuned on more data; " * 20}

_PRELUDE = """\
import json, sys, time
from huggingface_hub import HfApi, hf_hub_download
endpoint = sys.argv[1]
api = HfApi(endpoint=endpoint)
"""
_UPLOAD = """\
path, repo = sys.argv[2], sys.argv[3]
start = time.perf_counter()
info = api.upload_file(path_or_fileobj=path, path_in_repo={name!r}, repo_id=repo)
print(json.dumps({{"seconds": time.perf_counter() - start, "commit": info.oid}}))
"""
_DOWNLOAD = """\
repo, commit = sys.argv[2], sys.argv[3]
start = time.perf_counter()
path = hf_hub_download(repo, {name!r}, revision=commit, endpoint=endpoint)
print(json.dumps({{"seconds": time.perf_counter() - start, "path": path}}))
"""
_CHUNKING = """\
import hf_xet
path = sys.argv[2]
start = time.perf_counter()
hf_xet.hash_files([path])
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


@dataclass(frozen=True)
class Files:
    v1: Path
    edited: Path  # 1 KiB changed in the middle
    header: Path  # the header's metadata grown, the tensors unchanged
    size: int
    blake3: str
    changed: int  # bytes of the chunks of `edited` that v1 lacks
    shift: int  # bytes the header grew by in `header`


@dataclass(frozen=True)
class Timed:
    """One upload: its time in the client, and what the node spent meanwhile."""

    seconds: float  # in the client process, around the one call
    client_cpu: float  # CPU seconds of the client process (all of it, imports included)
    node_cpu: float  # CPU seconds of the node process
    routes: dict[str, float]  # seconds the node took to answer, summed by route (/metrics)


@dataclass(frozen=True)
class Reupload:
    timed: Timed
    sent: int  # bytes the client sent (headers and bodies), counted at the proxy
    disk: int  # the blob store after it

    @property
    def seconds(self) -> float:
        return self.timed.seconds


@dataclass
class Rep:
    lfs: Timed | None = None
    xet: Timed | None = None
    xet_download: float = 0.0
    plain_download: float = 0.0
    disk_empty: int = 0
    disk_one: int = 0
    edit: Reupload | None = None
    header: Reupload | None = None
    chunking: float = 0.0  # the client chunking and hashing the edited copy, no network


@dataclass
class Results:
    size: int
    files: Files | None = None
    reps: list[Rep] = field(default_factory=list)
    rss: int = 0
    node_version: str = ""
    client_versions: str = ""
    load: list[float] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (1024)")
    parser.add_argument("--reps", type=int, default=3, help="fresh node pairs (3)")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    for name, low, high in (("size_mib", 16, 16384), ("reps", 1, 10)):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be within {low}..{high}")
    return args


# -- the files -------------------------------------------------------------------------------


def _tensor(index: int) -> bytes:
    """Random float32 bytes; every fourth tensor with one top byte (little-endian: byte 3)."""
    data = bytearray(os.urandom(TENSOR))
    if index % 4 == 3:
        data[3::4] = b"\x3c" * (TENSOR // 4)
    return bytes(data)


def _header(metadata: dict[str, str], count: int) -> bytes:
    """The 8-byte length and the JSON header (`__metadata__` first, padded with spaces to 8
    bytes, as the safetensors library writes it) of `count` float32 tensors of TENSOR bytes."""
    header: dict[str, object] = {"__metadata__": metadata}
    for i in range(count):
        offsets = [i * TENSOR, (i + 1) * TENSOR]
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [1024, 1024],
            "data_offsets": offsets,
        }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_files(root: Path, size_mib: int) -> Files:
    """v1, and its two edited copies, streamed tensor by tensor (never whole in memory)."""
    count = size_mib * MIB // TENSOR
    v1, edited, header = (root / f"{n}.safetensors" for n in ("v1", "edited", "header"))
    hasher = blake3.blake3()
    with v1.open("wb") as a, header.open("wb") as c:
        first, other = _header(OLD_METADATA, count), _header(NEW_METADATA, count)
        a.write(first)
        c.write(other)
        hasher.update(first)
        for i in range(count):
            tensor = _tensor(i)
            a.write(tensor)
            c.write(tensor)
            hasher.update(tensor)
    size = v1.stat().st_size
    shutil.copyfile(v1, edited)
    middle = size // 2
    with edited.open("r+b") as out:
        out.seek(middle)
        out.write(os.urandom(EDIT))
    changed = changed_bytes(v1, edited, middle)
    shift = header.stat().st_size - size
    return Files(v1, edited, header, size, str(hasher.hexdigest()), changed, shift)


def changed_bytes(old: Path, new: Path, middle: int) -> int:
    """Bytes of the chunks around the edit that `old` lacks, with the node's (pure Python)
    chunker over a window each side of it: content-defined boundaries agree again a chunk or
    two past the edit, and both windows start at the same place."""
    start = max(0, middle - WINDOW)

    def chunks(path: Path) -> list[bytes]:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(2 * WINDOW + EDIT)
        ends = [0, *chunk_boundaries(data)]
        return [data[a:b] for a, b in zip(ends, ends[1:], strict=False)]

    before = set(chunks(old))
    return sum(len(c) for c in chunks(new) if c not in before)


# -- the client ------------------------------------------------------------------------------


def client_versions() -> str:
    return f"huggingface_hub {version('huggingface_hub')}, hf_xet {version('hf_xet')}"


def client_step(
    root: Path, name: str, code: str, args: Sequence[str], *, xet: bool
) -> dict[str, object]:
    """Run `code` in a new Python process with a fresh HF_HOME (removed afterwards unless a
    download left its file there: the caller reads it, then removes the home)."""
    home = root / f"home-{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELYARD_"))}
    env |= {
        "HF_HOME": str(home),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_TOKEN": os.environ["BENCH_TOKEN"],
    }
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    command = [sys.executable, "-c", _PRELUDE + code.format(name=NAME), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    if done.returncode != 0:
        raise BenchError(f"client step {name} exited {done.returncode}:\n{done.stderr[-4000:]}")
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def upload(
    root: Path, node: _procs.Server, endpoint: str, path: Path, repo: str, name: str, *, xet: bool
) -> Timed:
    """Upload with the stock client (through `endpoint`: the node or a proxy before it)."""
    cpu, routes, client = _procs.cpu_seconds(node.pid), route_seconds(node), _children_cpu()
    answer = client_step(root, name, _UPLOAD, [endpoint, str(path), repo], xet=xet)
    client_cpu = _children_cpu() - client
    shutil.rmtree(root / f"home-{name}", ignore_errors=True)
    after = route_seconds(node)
    spent = {r: t - routes.get(r, 0.0) for r, t in after.items() if t > routes.get(r, 0.0)}
    seconds = float(str(answer["seconds"]))
    return Timed(seconds, client_cpu, _procs.cpu_seconds(node.pid) - cpu, spent)


def client_chunking(root: Path, path: Path) -> float:
    """Seconds the stock client's Xet library takes to cut a file into chunks and hash them,
    alone (`hf_xet.hash_files`): any upload of it, however little it sends, does this first."""
    answer = client_step(root, "chunking", _CHUNKING, ["-", str(path)], xet=True)
    shutil.rmtree(root / "home-chunking", ignore_errors=True)
    return float(str(answer["seconds"]))


def _children_cpu() -> float:
    """User + system CPU seconds of the child processes waited for so far (the clients;
    nodes are waited for only once stopped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def xet_download(root: Path, endpoint: str, repo: str, files: Files) -> float:
    answer = client_step(root, "download", _DOWNLOAD, [endpoint, repo, "main"], xet=True)
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(answer["path"]))
    shutil.rmtree(root / "home-download", ignore_errors=True)
    if hasher.hexdigest() != files.blake3:
        raise BenchError("the file downloaded through Xet differs from the one uploaded")
    return float(str(answer["seconds"]))


# -- the node --------------------------------------------------------------------------------


_DURATION_SUM = re.compile(
    r'^modelyard_http_request_duration_seconds_sum\{method="(\w+)",route="([^"]+)"\} (\S+)$',
    re.MULTILINE,
)


def route_seconds(node: _procs.Server) -> dict[str, float]:
    """Seconds the node has spent answering each route (method and path template), from its
    /metrics."""
    text = httpx.get(f"{node.url}/metrics", timeout=30).text
    found = {f"{m} {r}": float(v) for m, r, v in _DURATION_SUM.findall(text)}
    found.pop("GET /metrics", None)  # these scrapes
    return found


def blob_store_bytes(data_dir: Path) -> int:
    """Disk the node's blob store takes (allocated blocks, as du counts them)."""
    blobs = data_dir / "store" / "blobs"
    return sum(p.stat().st_blocks * 512 for p in blobs.rglob("*") if p.is_file())


def create_repo(node: _procs.Server, name: str) -> None:
    headers = {"authorization": f"Bearer {os.environ['BENCH_TOKEN']}"}
    answer = httpx.post(f"{node.url}/api/repos/create", json={"name": name}, headers=headers)
    if answer.status_code != 200:
        raise BenchError(f"creating {name}: HTTP {answer.status_code} {answer.text[:500]}")


def _port(server: _procs.Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def reupload(root: Path, node: _procs.Server, data_dir: Path, path: Path, name: str) -> Reupload:
    proxy = ByteCountingProxy(_port(node))
    try:
        timed = upload(root, node, proxy.url, path, "admin/xet", name, xet=True)
        sent = proxy.traffic().sent
    finally:
        proxy.close()
    return Reupload(timed, sent, blob_store_bytes(data_dir))


def lfs_rep(root: Path, rep: int, files: Files, token: str, res: Results, out: Rep) -> None:
    data_dir = root / f"lfs-{rep}"
    try:
        with _procs.node(data_dir, token, root / "node-lfs.log") as node:
            create_repo(node, "lfs")
            out.lfs = upload(root, node, node.url, files.v1, "admin/lfs", "lfs", xet=False)
            res.rss = max(res.rss, _procs.peak_rss_bytes(node.pid))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def xet_rep(root: Path, rep: int, files: Files, token: str, res: Results, out: Rep) -> None:
    data_dir = root / f"xet-{rep}"
    try:
        with _procs.node(data_dir, token, root / "node-xet.log") as node:
            res.node_version = node_version(node.url)
            create_repo(node, "xet")
            out.disk_empty = blob_store_bytes(data_dir)
            out.xet = upload(root, node, node.url, files.v1, "admin/xet", "xet", xet=True)
            out.disk_one = blob_store_bytes(data_dir)
            out.xet_download = xet_download(root, node.url, "admin/xet", files)
            url = f"{node.url}/admin/xet/resolve/main/{NAME}"
            out.plain_download = curl_get(url, {}, files.size).seconds
            out.edit = reupload(root, node, data_dir, files.edited, "edit")
            out.header = reupload(root, node, data_dir, files.header, "header")
            out.chunking = client_chunking(root, files.edited)
            res.rss = max(res.rss, _procs.peak_rss_bytes(node.pid))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run(args: argparse.Namespace, root: Path, token: str, res: Results) -> None:
    os.environ["BENCH_TOKEN"] = token
    print(f"writing {args.size_mib} MiB safetensors and its edited copies under {root}", flush=True)
    res.files = files = write_files(root, args.size_mib)
    res.client_versions = client_versions()
    for rep in range(args.reps):
        out = Rep()
        # Which goes first alternates: the first upload after writing may find a colder cache.
        for side in ("lfs", "xet") if rep % 2 == 0 else ("xet", "lfs"):
            (lfs_rep if side == "lfs" else xet_rep)(root, rep, files, token, res, out)
        res.reps.append(out)
        edit, header, lfs, xet = out.edit, out.header, out.lfs, out.xet
        assert edit is not None and header is not None and lfs is not None and xet is not None
        print(
            f"  rep {rep + 1}: upload LFS {lfs.seconds:.1f} s, Xet {xet.seconds:.1f} s; "
            f"download Xet {out.xet_download:.1f} s, plain {out.plain_download:.1f} s; "
            f"edit {edit.seconds:.1f} s, {edit.sent / MB:.2f} MB sent; "
            f"header {header.seconds:.1f} s, {header.sent / MB:.2f} MB sent",
            flush=True,
        )


# -- the report ------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _speeds(seconds: Sequence[float], size: int) -> str:
    return ", ".join(f"{size / s / GB:.2f}" for s in seconds) + " GB/s"


def _rows(res: Results, files: Files) -> list[str]:
    size, reps = files.size, res.reps
    edits = [r.edit for r in reps if r.edit is not None]
    headers = [r.header for r in reps if r.header is not None]
    lfs = [r.lfs.seconds for r in reps if r.lfs is not None]
    xet = [r.xet.seconds for r in reps if r.xet is not None]
    xet_get, plain_get = [r.xet_download for r in reps], [r.plain_download for r in reps]
    edit_s, header_s = _median([e.seconds for e in edits]), _median([h.seconds for h in headers])
    upload_ratio = _median(lfs) / _median(xet)
    edit_ratio = edit_s / _median(xet)
    chunking = _median([r.chunking for r in reps])
    one = _median([r.disk_one - r.disk_empty for r in reps])
    two = _median([e.disk - r.disk_empty for e, r in zip(edits, reps, strict=True)])
    disk_ratio = two / (one + files.changed)
    sent, header_sent = _median([e.sent for e in edits]), _median([h.sent for h in headers])
    return [
        "| measure | Xet | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|",
        f"| upload, stock client (fresh home) | {_median(xet):.2f} s ({_speeds(xet, size)}) "
        f"| LFS path: {_median(lfs):.2f} s ({_speeds(lfs, size)}) | {upload_ratio:.2f}x speed "
        f"| >= {UPLOAD_GOAL}x | {_met(upload_ratio >= UPLOAD_GOAL)} |",
        f"| re-upload of the 1 KiB edit (fresh home) | {edit_s:.2f} s | first Xet upload: "
        f"{_median(xet):.2f} s | {edit_ratio:.2f}x time | <= {EDIT_TIME_GOAL}x "
        f"| {_met(edit_ratio <= EDIT_TIME_GOAL)} |",
        f"| the client chunking the edited copy alone (`hf_xet.hash_files`, no network) "
        f"| {chunking:.2f} s | first Xet upload: {_median(xet):.2f} s "
        f"| {chunking / _median(xet):.2f}x time | (a floor of the row above) | |",
        f"| blob store, two versions (after the edit) | {two / MB:.1f} MB | one version "
        f"{one / MB:.1f} MB + changed chunks {files.changed / MB:.2f} MB | {disk_ratio:.3f}x "
        f"| <= {DISK_GOAL}x | {_met(disk_ratio <= DISK_GOAL)} |",
        f"| bytes sent re-uploading the 1 KiB edit | {sent / MB:.2f} MB | file {size / MB:.0f} MB "
        f"| {sent / size:.2%} | <= {SENT_GOAL:.0%} (the test's bound) "
        f"| {_met(sent / size <= SENT_GOAL)} |",
        f"| bytes sent re-uploading with new header metadata | {header_sent / MB:.2f} MB, "
        f"{header_s:.2f} s | file {size / MB:.0f} MB | {header_sent / size:.2%} "
        f"| <= {SENT_GOAL:.0%} (the test's bound) | {_met(header_sent / size <= SENT_GOAL)} |",
        f"| download, stock client through Xet (fresh home) | {_median(xet_get):.2f} s "
        f"({_speeds(xet_get, size)}) | plain GET /resolve (curl): {_median(plain_get):.2f} s "
        f"({_speeds(plain_get, size)}) | {_median(plain_get) / _median(xet_get):.2f}x speed "
        "| | |",
    ]


def _spent(label: str, runs: Sequence[Timed]) -> str:
    """Where one kind of upload's time went: the client's wall time, the node's CPU time, and
    the node's time answering its busiest routes (summed over concurrent requests)."""
    routes = {r for t in runs for r in t.routes}

    def median_of(route: str) -> float:
        return _median([t.routes.get(route, 0.0) for t in runs])

    top = sorted(routes, key=median_of, reverse=True)[:3]
    return (
        f"- {label}: client {_median([t.seconds for t in runs]):.2f} s (its process used "
        f"{_median([t.client_cpu for t in runs]):.2f} s of CPU), node CPU "
        f"{_median([t.node_cpu for t in runs]):.2f} s; node answering "
        + ", ".join(f"`{r}` {median_of(r):.2f} s" for r in top)
        + "."
    )


def _time_lines(reps: Sequence[Rep]) -> list[str]:
    lfs = [r.lfs for r in reps if r.lfs is not None]
    xet = [r.xet for r in reps if r.xet is not None]
    edit = [r.edit.timed for r in reps if r.edit is not None]
    header = [r.header.timed for r in reps if r.header is not None]
    return [
        "Where the upload time goes (medians; node time per route summed over concurrent "
        "requests, from its /metrics):",
        "",
        _spent("LFS upload", lfs),
        _spent("Xet upload", xet),
        _spent("Xet re-upload of the 1 KiB edit", edit),
        _spent("Xet re-upload with new header metadata", header),
    ]


def render(res: Results, argline: str) -> str:
    files = res.files
    assert files is not None
    reps = res.reps
    title = (
        f"## Xet ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `bench/xet.py"
        f"{' ' + argline if argline else ''}`, {files.size / MIB:.0f} MiB file, {len(reps)} reps, "
        "median)"
    )
    per_rep = "; ".join(
        f"{(r.disk_one - r.disk_empty) / MB:.1f} / {(r.edit.disk - r.disk_empty) / MB:.1f} / "
        f"{(r.header.disk - r.disk_empty) / MB:.1f}"
        for r in reps
        if r.edit is not None and r.header is not None
    )
    lines = [
        "",
        title,
        "",
        f"- node {res.node_version} at git {git_version()}; {res.client_versions}; one "
        "`modelyard serve` (embedded default) per side and rep, fresh data dir; every client "
        "step a new process with a fresh HF_HOME and Xet cache.",
        f"- file: a .safetensors of {files.size // TENSOR} float32 tensors of 4 MiB, random "
        "except every fourth (one top byte per float). Edits: 1 KiB changed in the middle "
        f"(chunks the edit touched: {files.changed / 1024:.0f} KiB); the header's `__metadata__` "
        f"grown, every tensor shifted by {files.shift} bytes.",
        "- 1-minute load average at start / end: "
        + " / ".join(f"{x:.2f}" for x in res.load)
        + f" (2 cores: client, node and proxy share them). Node peak RSS {res.rss / MB:.0f} MB.",
        "",
        *_rows(res, files),
        "",
        f"- blob store per rep (MB; one version / after the edit / after the header change): "
        f"{per_rep}.",
        "",
        *_time_lines(reps),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="modelyard-xet-bench-", dir=args.work_dir))
    res = Results(size=args.size_mib * MIB, load=[os.getloadavg()[0]])
    try:
        run(args, root, "myd_bench_" + secrets.token_urlsafe(24), res)
    except (BenchError, RuntimeError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        print(f"xet.py: FAILED: {exc}", file=sys.stderr)
        print_logs(root)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res.load.append(os.getloadavg()[0])
    section = render(res, " ".join(sys.argv[1:]))
    print(section)
    if not args.no_record:
        append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
