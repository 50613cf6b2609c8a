"""Replication benchmark: commit-to-visible lag on a replica, and catch-up throughput.

Run: `.venv/bin/python bench/sync_lag.py [--commits 100] [--catchup 1000] [--blob-mib 256]
[--catchup-blob-mib 1024] [--blob-file-mib 128]`.
Two node processes on 127.0.0.1 (A home, B replica, long-poll on). Appends to RESULTS.md.

Blob catch-up is measured on a node pair of its own, whose log holds only the commit of those
blobs: from the first blob the replica wants (its `/v1/peers` `catch_up`) to the last one
stored, verified, against `curl -o` of each of the same blobs from the same node, in the
same run, onto the same disk (the ratio is the figure to judge: goal >= 0.8). Live lag is
then measured on `--lag-reps` more fresh replicas while each catches up, and on the same pairs
once idle (the same-run baseline: on a loaded machine the idle lag moves too).
`--blob-only` runs only these blob parts.

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

import blake3
import httpx

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _clients import curl_get
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


def measure_blob_catchup(
    root: Path, total_mib: int, file_mib: int, reps: int, lag_reps: int
) -> tuple[list[tuple[float, float, float]], list[float], list[float]]:
    """Per rep, on a fresh replica: (blob catch-up MB/s, curl -o MB/s of the same blobs just
    before, catch-up MB/s counted from add_peer); and the live lags during `lag_reps` more
    catch-ups, and on the same pairs once idle."""
    a = NodeProcess(root, "blobs-a").start()
    try:
        count = max(1, total_mib // file_mib)
        files = {f"w{i}.safetensors": os.urandom(file_mib << 20) for i in range(count)}
        HfApi(endpoint=a.url, token=TOKEN).create_repo("admin/blobs")
        HfApi(endpoint=a.url, token=TOKEN).create_commit(
            "admin/blobs",
            [CommitOperationAdd(name, data) for name, data in files.items()],
            commit_message="blobs",
        )
        digests = {blake3.blake3(data).hexdigest(): len(data) for data in files.values()}
        del files
        runs = [catch_up_once(root, a, digests, f"blobs-b{rep}") for rep in range(reps)]
        busy: list[float] = []
        idle: list[float] = []
        for rep in range(lag_reps):
            during, after = lag_during_catch_up(root, a, digests, f"blobs-live{rep}")
            busy += during
            idle += after
        return runs, sorted(busy), sorted(idle)
    finally:
        a.stop()


def lag_during_catch_up(
    root: Path, a: NodeProcess, digests: dict[str, int], name: str
) -> tuple[list[float], list[float]]:
    """Commit-to-visible lags on a fresh replica while it catches up on the blobs (a run not
    in the ratio: the commits take CPU from it), then as many on the same pair once it is idle
    (the same-run baseline)."""
    api = HfApi(endpoint=a.url, token=TOKEN)
    api.create_repo("admin/live", exist_ok=True)
    b = NodeProcess(root, name, env={"MODELYARD_SYNC__LONG_POLL": "20"}).start()
    busy: list[float] = []
    idle: list[float] = []
    try:
        blob_dir = b.data_dir / "store" / "blobs" / "blake3"
        b.add_peer(a)
        with b.client() as http:
            wait_until(lambda: head(http, "admin/live") is not None, 30, 0.01)

            def commit_and_wait(i: int) -> float:
                sha = api.create_commit(
                    "admin/live",
                    [CommitOperationAdd(f"{name}-{i}.txt", b"x")],
                    commit_message=f"{i}",
                ).oid
                acked = time.perf_counter()
                wait_until(lambda: head(http, "admin/live") == sha, 30, 0.002)
                return time.perf_counter() - acked

            while not all((blob_dir / d[:2] / d).exists() for d in digests):
                busy.append(commit_and_wait(len(busy)))
            time.sleep(1)  # the last blob's bookkeeping done
            idle = [commit_and_wait(len(busy) + i) for i in range(max(10, len(busy)))]
    finally:
        b.stop()
    return busy, idle


def catch_up_once(
    root: Path, a: NodeProcess, digests: dict[str, int], name: str
) -> tuple[float, float, float]:
    size = sum(digests.values())
    out = root / "curl.out"
    began = time.perf_counter()
    for digest, length in digests.items():
        curl_get(f"{a.url}/v1/blobs/{digest}", {"authorization": f"Bearer {TOKEN}"}, length, out)
        out.unlink()
    plain = size / (time.perf_counter() - began) / 1e6
    b = NodeProcess(root, name).start()
    try:
        blob_dir = b.data_dir / "store" / "blobs" / "blake3"
        added = time.perf_counter()
        b.add_peer(a)
        wait_until(lambda: b.peers()[0]["catch_up"]["blobs_wanted"] > 0, 60, 0.002)
        started = time.perf_counter()
        wait_until(lambda: all((blob_dir / d[:2] / d).exists() for d in digests), 600, 0.005)
        done = time.perf_counter()
    finally:
        b.stop()
    return size / (done - started) / 1e6, plain, size / (done - added) / 1e6


def main_replay(entries: int, backend: str, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp, database(backend) as env:
        root = Path(tmp)
        a = NodeProcess(root, "a", env=env).start()
        try:
            total = build_log(a, entries)
            loads = [os.getloadavg()[0]]
            rates = []
            for rep in range(reps):
                with database(backend) as replica_env:
                    rates.append(replay(root, f"r{rep}", a, total, replica_env))
                loads.append(os.getloadavg()[0])
        finally:
            a.stop()
    figures = ", ".join(f"{r:.0f}" for r in rates)
    lines = [
        f"\n## Replay catch-up ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`bench/sync_lag.py --replay {entries} --database {backend}`)\n",
        f"- a new replica pulls {total} entries from serial 0 on {backend}: "
        f"median {statistics.median(rates):.0f} entries/s ({figures}; goal >= 5000); "
        "1-minute load average before and after each rep: "
        + ", ".join(f"{load:.1f}" for load in loads),
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
    parser.add_argument("--catchup-blob-mib", type=int, default=1024)
    parser.add_argument("--blob-file-mib", type=int, default=128)
    parser.add_argument("--blob-reps", type=int, default=5)
    parser.add_argument("--lag-reps", type=int, default=3, help="catch-ups with live commits")
    parser.add_argument("--blob-only", action="store_true", help="only the blob catch-up parts")
    parser.add_argument("--replay", type=int, default=0, help="only replay catch-up, N entries")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.replay:
        main_replay(args.replay, args.database, args.reps)
        return
    loads = [os.getloadavg()[0]]
    lines = [f"\n## Replication ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{' '.join(sys.argv)}`)\n"]
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        root = Path(tmp)
        if not args.blob_only:
            lines += replication_lines(root, args)
            loads.append(os.getloadavg()[0])
        runs, busy, idle = measure_blob_catchup(
            root, args.catchup_blob_mib, args.blob_file_mib, args.blob_reps, args.lag_reps
        )
        loads.append(os.getloadavg()[0])
    ratios = sorted(c / p for c, p, _ in runs)
    lines += [
        f"- blob catch-up alone, {args.catchup_blob_mib} MiB in {args.blob_file_mib} MiB blobs, "
        f"{len(runs)} fresh replicas: median **{ratios[len(ratios) // 2]:.2f}x** `curl -o` of "
        "the same blobs just before (goal >= 0.8x); per run catch-up / curl MB/s: "
        + ", ".join(f"{c:.0f}/{p:.0f} ({c / p:.2f}x)" for c, p, _ in runs)
        + f"; counted from the peer's add (first contact included): "
        f"{statistics.median(w for _, _, w in runs):.0f} MB/s median",
        f"- live lag while {args.lag_reps} fresh replicas catch up on those blobs: "
        + lag_figures(busy)
        + f"; the same pairs idle just after: {lag_figures(idle)} (goal: p50 < 50 ms)",
        "- load average (1 min) at start, between parts, at end: "
        + ", ".join(f"{load:.1f}" for load in loads),
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as out:
        out.write("\n".join(lines))


def lag_figures(lags: list[float]) -> str:
    if not lags:
        return "no commit fitted"
    return (
        f"{len(lags)} commits, p50 {statistics.median(lags) * 1000:.0f} ms, "
        f"max {lags[-1] * 1000:.0f} ms"
    )


def replication_lines(root: Path, args: argparse.Namespace) -> list[str]:
    """Live lag of an idle pair, and a new replica's catch-up with its blobs."""
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
    return [
        f"- commit acknowledged on A -> visible on B, {len(lags)} commits, long-poll 20 s: "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms "
        "(goals: p50 < 500 ms, p99 < 2 s)",
        f"- catch-up of a new replica: {total} entries at {rate:.0f} entries/s; "
        f"{args.blob_mib} MiB of blobs at {mbps:.0f} MB/s (eager; timed from the peer's add, "
        "metadata catch-up included)",
    ]


if __name__ == "__main__":
    main()
