"""Ingest benchmark: a node's PUT against hashing the same bytes in this process, and the first
GET after the upload against nginx's first GET after its own PUT.

Run: `.venv/bin/python bench/ingest.py [--size-mib 1024] [--reps 3]` (`--no-record` to skip
RESULTS.md). Needs Debian's nginx (WebDAV PUT) and curl. Per rep, alternating which side goes
first: a fresh `modelyard serve` (new data dir, stopped by PID) gets `curl -T` on
`PUT /v1/blobs/{blake3}` and, at once, `curl` on `GET /v1/blobs/{blake3}`; nginx gets the same
PUT and GET. Baselines in the same run: BLAKE3 + SHA-256 of the file's bytes (from the page
cache, 4 MiB pieces) in this process, on two threads (the hashing limit on two cores) and on one;
and uvicorn receiving the same PUT into an app that drops it (bench/_sink_app.py): the floor
of the node's server before any routing, hashing or writing.
Goals: ingest >= 0.8x hashing on two threads; first GET >= 0.8x nginx's first GET.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import _procs
import blake3
from _clients import curl_get, curl_put, missing_tools
from _report import append_results, gbps, git_version, ratio

PIECE = 4 * 1024 * 1024
GOAL = 0.8


def write_random(path: Path, size: int) -> str:
    b3 = blake3.blake3()
    with path.open("wb") as f:
        for _ in range(0, size, PIECE):
            chunk = os.urandom(min(PIECE, size - f.tell()))
            b3.update(chunk)
            f.write(chunk)
    return str(b3.hexdigest())


def hash_rate(path: Path, threads: int) -> float:
    """BLAKE3 + SHA-256 of the file's bytes in 4 MiB pieces; bytes/s."""
    size = path.stat().st_size
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as whole:
        view = memoryview(whole)
        b3, sha = blake3.blake3(), hashlib.sha256()
        started = time.perf_counter()
        for start in range(0, size, PIECE):
            piece = view[start : start + PIECE]
            if threads == 2:
                other = threading.Thread(target=sha.update, args=(piece,))
                other.start()
                b3.update(piece)
                other.join()
            else:
                b3.update(piece)
                sha.update(piece)
        seconds = time.perf_counter() - started
        del piece
        view.release()
    return size / seconds


def node_rep(root: Path, rep: int, data: Path, digest: str, token: str) -> tuple[float, float]:
    data_dir = root / f"node-{rep}"
    auth = {"authorization": f"Bearer {token}"}
    size = data.stat().st_size
    try:
        with _procs.node(data_dir, token, root / f"node-{rep}.log") as node:
            url = f"{node.url}/v1/blobs/{digest}"
            put = curl_put(url, data, auth, expect=201)
            get = curl_get(url, auth, size)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return put.rate, get.rate


def nginx_rep(nginx: _procs.Server, www: Path, data: Path) -> tuple[float, float]:
    (www / data.name).unlink(missing_ok=True)
    url = f"{nginx.url}/{data.name}"
    put = curl_put(url, data, {}, expect=201)
    get = curl_get(url, {}, data.stat().st_size)
    return put.rate, get.rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if missing := missing_tools(["nginx", "curl"]):
        print(f"missing: {' '.join(missing)} (apt-get install -y nginx curl)", file=sys.stderr)
        return 2
    size = args.size_mib * 1024 * 1024
    token = "myd_bench_" + secrets.token_urlsafe(24)
    load = [os.getloadavg()[0]]
    runs: dict[str, list[float]] = {
        k: [] for k in ("two", "one", "put", "get", "nginx put", "nginx get", "receive")
    }
    with tempfile.TemporaryDirectory(prefix="modelyard-ingest-bench-") as tmp:
        root = Path(tmp)
        data = root / "big.safetensors"
        digest = write_random(data, size)
        with _procs.nginx(root / "nginx") as nginx, _procs.sink(root) as sink:
            for rep in range(args.reps):
                runs["two"].append(hash_rate(data, 2))
                runs["one"].append(hash_rate(data, 1))
                runs["receive"].append(curl_put(f"{sink.url}/x", data, {}, expect=201).rate)
                for side in ("node", "nginx") if rep % 2 == 0 else ("nginx", "node"):
                    if side == "node":
                        put, get = node_rep(root, rep, data, digest, token)
                    else:
                        put, get = nginx_rep(nginx, root / "nginx" / "www", data)
                    prefix = "" if side == "node" else "nginx "
                    runs[prefix + "put"].append(put)
                    runs[prefix + "get"].append(get)
                print(
                    f"  rep {rep + 1}: "
                    + ", ".join(f"{k} {v[-1] / 1e9:.2f}" for k, v in runs.items())
                    + " GB/s",
                    flush=True,
                )
    load.append(os.getloadavg()[0])
    vs_two, ingest_median = ratio(runs["put"], runs["two"])
    vs_one, _ = ratio(runs["put"], runs["one"])
    vs_nginx_put, _ = ratio(runs["put"], runs["nginx put"])
    vs_receive, _ = ratio(runs["put"], runs["receive"])
    vs_get, get_median = ratio(runs["get"], runs["nginx get"])
    met = {True: "yes", False: "**no**"}
    section = "\n".join(
        [
            f"\n## Ingest and first GET ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"`bench/ingest.py --size-mib {args.size_mib} --reps {args.reps}`)\n",
            f"- git {git_version()}; a fresh `modelyard serve` (embedded default) per rep and one "
            "nginx (WebDAV) on 127.0.0.1; curl for every transfer; best / median of the reps.",
            "- 1-minute load average at start / end: "
            + " / ".join(f"{x:.2f}" for x in load)
            + " (2 cores: anything else running skews the figures).",
            "",
            "| measure | rate | baseline | vs baseline (best, median) | goal | met |",
            "|---|---|---|---|---|---|",
            f"| ingest: PUT /v1/blobs (BLAKE3 + SHA-256 + fsync) | {gbps(runs['put'])} | "
            f"hashing both in-process, 2 threads: {gbps(runs['two'])} | {vs_two} | "
            f">= {GOAL}x | {met[ingest_median >= GOAL]} |",
            f"| | | hashing both, 1 thread: {gbps(runs['one'])} | {vs_one} | | |",
            f"| | | nginx WebDAV PUT: {gbps(runs['nginx put'])} | {vs_nginx_put} | | |",
            f"| | | uvicorn receiving the body, nothing else (bench/_sink_app.py): "
            f"{gbps(runs['receive'])} | {vs_receive} | | |",
            f"| first GET /v1/blobs after the PUT | {gbps(runs['get'])} | "
            f"nginx's first GET after its PUT: {gbps(runs['nginx get'])} | {vs_get} | "
            f">= {GOAL}x | {met[get_median >= GOAL]} |",
        ]
    )
    print(section)
    if not args.no_record:
        append_results(section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
