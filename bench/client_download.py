"""Client download benchmark: `mirror.Downloader` fetching a 1 GiB file from a node with
parallel ranges (and with one stream), versus `curl` of the same URL, in the same run.

Run: `.venv/bin/python bench/client_download.py [--size-mib 1024] [--reps 3] [--parallel 4]`
(`--no-record` to skip RESULTS.md). One `modelyard serve` on 127.0.0.1, stopped by PID at the
end. curl writes the file to disk (`-o`) and verifies nothing; the client writes it, checks its
BLAKE3 against the manifest and moves it into place. The file is in the page cache for both.
Goal: the client >= 1.0x curl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import blake3
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _clients import curl_get, curl_put, missing_tools
from _procs import node
from _report import append_results, gbps, git_version, ratio

from mirror import Downloader, RetryPolicy
from registry.client.diskwrites import write_choice
from registry.client.streaming import PIECE

TOKEN = "myd_bench_admin_token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REPO = "admin/big"


def write_random(path: Path, size: int) -> tuple[str, str]:
    """A file of random bytes; returns its BLAKE3 and SHA-256."""
    b3, sha = blake3.blake3(), hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * 1024 * 1024))
            b3.update(chunk)
            sha.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return b3.hexdigest(), sha.hexdigest()


def publish(url: str, path: Path, b3: str, sha256: str) -> None:
    """PUT the blob natively, then commit it to a repo by its SHA-256 (no second upload)."""
    curl_put(f"{url}/v1/blobs/{b3}", path, AUTH, 201)
    lfs = {"path": "big.safetensors", "algo": "sha256", "oid": sha256, "size": path.stat().st_size}
    body = "\n".join(
        json.dumps(line)
        for line in (
            {"key": "header", "value": {"summary": "big file"}},
            {"key": "lfsFile", "value": lfs},
        )
    )
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        http.post("/api/repos/create", json={"name": "big", "organization": "admin"})
        http.post(
            f"/api/models/{REPO}/commit/main",
            content=body,
            headers={"content-type": "application/x-ndjson"},
        ).raise_for_status()


def client_once(url: str, work: Path, parallel: int, size: int) -> float:
    target = work / f"client-{parallel}"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    with Downloader([url], parallel=parallel, retry=RetryPolicy(attempts=1)) as downloader:
        got = downloader.download_file(REPO, "big.safetensors", target)
    seconds = time.perf_counter() - started
    assert got.stat().st_size == size
    shutil.rmtree(target)
    return size / seconds


def curl_once(url: str, b3: str, work: Path, size: int) -> float:
    out = work / "curl.out"
    transfer = curl_get(f"{url}/v1/blobs/{b3}", {}, size, to=out)
    out.unlink()
    return transfer.rate


def disk_rates(work: Path, size: int) -> tuple[float, float]:
    """This disk's write rate for a fresh file of `size` bytes, with O_DIRECT (as the client
    writes a large file) and buffered (as curl does), in bytes/s: context for the ratios."""
    piece = mmap.mmap(-1, PIECE)
    piece.write(os.urandom(PIECE))
    rates = []
    for flags in (getattr(os, "O_DIRECT", 0), 0):
        path = work / "disk.probe"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags)
        started = time.perf_counter()
        try:
            for offset in range(0, size - size % PIECE, PIECE):
                os.pwrite(fd, piece, offset)
        finally:
            os.close(fd)
        rates.append(size / (time.perf_counter() - started))
        path.unlink()
    piece.close()
    return rates[0], rates[1]


def learned(work: Path) -> str:
    """What the client learned of this disk's two ways of writing, over the run."""
    fd = os.open(work, os.O_RDONLY)
    try:
        rates = write_choice(fd).rates()
    finally:
        os.close(fd)
    return ", ".join(
        f"{'O_DIRECT' if direct else 'buffered'} {rate / 1e9:.2f} GB/s"
        for direct, rate in sorted(rates.items(), reverse=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=None, help="default: one per core")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if missing := missing_tools(["curl"]):
        print(f"missing: {' '.join(missing)} (apt-get install -y curl)", file=sys.stderr)
        return 2
    size = args.size_mib * 1024 * 1024
    streams = args.parallel or min(8, os.cpu_count() or 2)
    with tempfile.TemporaryDirectory(prefix="modelyard-client-bench-") as tmp:
        work = Path(tmp)
        source = work / "big.safetensors"
        b3, sha256 = write_random(source, size)
        with node(work / "data", TOKEN, work / "node.log") as server:
            publish(server.url, source, b3, sha256)
            source.unlink()
            direct, buffered = disk_rates(work, size)
            curl_once(server.url, b3, work, size)  # warm the page cache
            curl, parallel, single = [], [], []
            for rep in range(args.reps):
                order = ["curl", "client"] if rep % 2 == 0 else ["client", "curl"]
                for which in order:
                    if which == "curl":
                        curl.append(curl_once(server.url, b3, work, size))
                    else:
                        parallel.append(client_once(server.url, work, streams, size))
                        single.append(client_once(server.url, work, 1, size))
                print(
                    f"  rep {rep + 1}: curl {curl[-1] / 1e9:.2f}, client x{streams} "
                    f"{parallel[-1] / 1e9:.2f}, client x1 {single[-1] / 1e9:.2f} GB/s",
                    flush=True,
                )
            client_rates = learned(work)
    vs_curl, ratio_median = ratio(parallel, curl)
    section = "\n".join(
        [
            f"\n## Client download ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"`bench/client_download.py --size-mib {args.size_mib} --reps {args.reps} "
            f"--parallel {streams}`)\n",
            f"- git {git_version()}; one `modelyard serve` on 127.0.0.1; {args.size_mib} MiB "
            "from the page cache; best / median of the reps, alternating which goes first.",
            f"- this disk, same run, writing {args.size_mib} MiB fresh in 32 MiB pieces: "
            f"O_DIRECT {direct / 1e9:.2f} GB/s, buffered {buffered / 1e9:.2f} GB/s (how curl "
            "writes); the client times both as it writes and takes the faster "
            f"(its recent rates at the end: {client_rates}).",
            "",
            "| client | rate | vs curl (best, median) | goal | met |",
            "|---|---|---|---|---|",
            f"| curl -o file (`GET /v1/blobs`) | {gbps(curl)} | 1.00x | | |",
            f"| `mirror.Downloader`, {streams} ranges at once, verified | {gbps(parallel)} | "
            f"{vs_curl} | >= 1.0x | {'yes' if ratio_median >= 1.0 else '**no**'} |",
            f"| `mirror.Downloader`, 1 stream, BLAKE3 verified | {gbps(single)} | "
            f"{ratio(single, curl)[0]} | | |",
        ]
    )
    print(section)
    if not args.no_record:
        append_results(section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
