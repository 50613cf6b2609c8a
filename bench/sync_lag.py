"""Replication benchmark: commit-to-visible lag on a replica, and catch-up throughput.

Run: `.venv/bin/python bench/sync_lag.py [--commits 100] [--catchup 1000] [--blob-mib 256]`.
Two node processes on 127.0.0.1 (A home, B replica, long-poll on). Appends to RESULTS.md.

`--replay N [--database sqlite|postgres]` measures only a new replica's metadata catch-up
(replay from serial 0) of a log of about N entries, `--reps` times, on the embedded default or
on PostgreSQL (see bench/_replay.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _replay import build_log, database, replay
from huggingface_hub import CommitOperationAdd, HfApi

from tests.e2e.cluster import TOKEN, NodeProcess, wait_until

RESULTS = Path(__file__).with_name("RESULTS.md")


def head(http: httpx.Client, repo: str) -> str | None:
    response = http.get(f"/api/models/{repo}/revision/main")
    return response.json()["sha"] if response.status_code == 200 else None


def measure_lag(a: NodeProcess, b: NodeProcess, commits: int) -> list[float]:
    api = HfApi(endpoint=a.url, token=TOKEN)
    api.create_repo("admin/lag")
    lags = []
    with b.client() as http:
        wait_until(lambda: head(http, "admin/lag") is not None, 30)
        for i in range(commits):
            sha = api.create_commit(
                "admin/lag", [CommitOperationAdd(f"{i}.txt", b"x")], commit_message=f"c{i}"
            ).oid
            acked = time.perf_counter()
            deadline = acked + 30
            while head(http, "admin/lag") != sha:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"commit {i} not visible on the replica within 30 s")
                time.sleep(0.002)
            lags.append(time.perf_counter() - acked)
    return lags


def measure_catchup(
    root: Path, a: NodeProcess, entries: int, blob_mib: int
) -> tuple[float, float, int]:
    api = HfApi(endpoint=a.url, token=TOKEN)
    api.create_repo("admin/away")
    per_file = 32 * 1024 * 1024
    for i in range(max(1, blob_mib * 1024 * 1024 // per_file)):
        api.upload_file(
            path_or_fileobj=os.urandom(per_file),
            path_in_repo=f"w{i}.safetensors",
            repo_id="admin/away",
        )
    repos = [f"admin/away{r}" for r in range(10)]  # small trees: entries, not rows, dominate
    for repo in repos:
        api.create_repo(repo)
    for i in range(entries // 2):  # each commit is two entries (commit.add, ref.set)
        api.create_commit(
            repos[i % 10], [CommitOperationAdd(f"{i}.txt", b"y")], commit_message=f"c{i}"
        )
    with a.client() as http:
        total = http.get("/v1/sync/changes", params={"since": 0, "limit": 1}).json()["head"]
    b = NodeProcess(root, "b2").start()
    try:
        started = time.perf_counter()
        b.add_peer(a)
        wait_until(lambda: b.peers()[0]["cursor"] >= total, 300, 0.01)
        meta = time.perf_counter() - started  # includes the first contact (< 0.5 s)
        blob_dir = b.data_dir / "store" / "blobs"
        wanted = blob_mib * 1024 * 1024
        wait_until(
            lambda: sum(p.stat().st_size for p in blob_dir.rglob("*") if p.is_file()) >= wanted,
            600,
            0.05,
        )
        blobs = time.perf_counter() - started
    finally:
        b.stop()
    return total / meta, blob_mib * 1.048576 / blobs, total


def main_replay(entries: int, backend: str, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp, database(backend) as env:
        root = Path(tmp)
        a = NodeProcess(root, "a", env=env).start()
        try:
            total = build_log(a, entries)
            rates = []
            for rep in range(reps):
                with database(backend) as replica_env:
                    rates.append(replay(root, f"r{rep}", a, total, replica_env))
        finally:
            a.stop()
    figures = ", ".join(f"{r:.0f}" for r in rates)
    lines = [
        f"\n## Replay catch-up ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`bench/sync_lag.py --replay {entries} --database {backend}`)\n",
        f"- a new replica pulls {total} entries from serial 0 on {backend}: "
        f"median {statistics.median(rates):.0f} entries/s ({figures}; goal >= 5000)",
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as out:
        out.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--catchup", type=int, default=1000)
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--replay", type=int, default=0, help="only replay catch-up, N entries")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.replay:
        main_replay(args.replay, args.database, args.reps)
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        root = Path(tmp)
        a = NodeProcess(root, "a", env={"MODELYARD_SYNC__LONG_POLL": "20"}).start()
        b = NodeProcess(root, "b", env={"MODELYARD_SYNC__LONG_POLL": "20"}).start()
        try:
            b.add_peer(a)
            lags = sorted(measure_lag(a, b, args.commits))
            b.stop()
            rate, mbps, total = measure_catchup(root, a, args.catchup, args.blob_mib)
        finally:
            a.stop()
            b.stop()
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    lines = [
        f"\n## Replication ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `bench/sync_lag.py`)\n",
        f"- commit acknowledged on A -> visible on B, {len(lags)} commits, long-poll 20 s: "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms "
        "(goals: p50 < 500 ms, p99 < 2 s)",
        f"- catch-up of a new replica: {total} entries at {rate:.0f} entries/s; "
        f"{args.blob_mib} MiB of blobs at {mbps:.0f} MB/s (eager, 4 fetchers)",
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    main()
