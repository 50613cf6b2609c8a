"""Join benchmark: a new replica catching up with a node of many repos, from the node's
snapshot and by replaying its log from serial 0, in the same run.

Run: `.venv/bin/python bench/join.py [--repos 100000] [--modes snapshot,replay]
[--build-workers 4]` (`--no-record` to skip RESULTS.md). The fixture (repos each with a card
commit, written through the node's own services by several processes, durability relaxed for
the build alone) is built once into bench/.work/join-REPOS-vN and reused. Each run copies it,
serves it, and for each mode starts an empty node, adds the home with `modelyard peer add
--bootstrap MODE --blobs lazy` (metadata only: blob catch-up is timed by bench/sync_lag.py),
and times until the replica's cursor is at the home's head and its `/v1/sync/state-digest`
equals the home's. Replay is the baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _procs import modelyard_executable
from _procs import node as node_process
from _report import append_results, git_version

from registry.domain.access import Principal
from registry.domain.names import RepoId, RepoType
from registry.runtime import Runtime
from registry.service.commits import AddBytes
from registry.settings import Settings

WORK = Path(__file__).with_name(".work")
TOKEN = "myd_bench_admin_token"
ADMIN = Principal("admin", is_admin=True, can_write=True)
FIXTURE_VERSION = 1
QUIET = {"MODELYARD_INDEX__ENABLED": "false", "MODELYARD_SCAN__ENABLED": "false"}


def build_fixture(target: Path, repos: int, workers: int) -> None:
    """`repos` repos, each with a card commit, through the node's services (its own write
    path: the same rows, blobs and hash-chained log as a served node writes), by `workers`
    processes each writing every `workers`-th repo into the one node. A smaller fixture built
    already is copied and grown (its repos are the first ones of this).

    Durability is relaxed for the build alone (SQLite `synchronous=OFF`, no fsync of blob
    files, one `sync` at the end): a crash mid-build leaves a `.tmp` dir that is rebuilt.
    """
    shutil.rmtree(target, ignore_errors=True)
    smaller = {int(p.name.split("-")[1]): p for p in WORK.glob(f"join-*-v{FIXTURE_VERSION}")}
    start = max((n for n in smaller if n < repos), default=0)
    if start:
        print(f"  fixture: growing the one of {start} repos", flush=True)
        shutil.copytree(smaller[start], target)
    _open_for_build(target).close()  # the schema and the node's identity, made once
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        jobs = [
            pool.apply_async(_build_slice, (target, start + w, workers, repos))
            for w in range(workers)
        ]
        for job in jobs:
            job.get()
    os.sync()
    print(f"  fixture: {repos} repos in {time.perf_counter() - started:.0f} s", flush=True)


def _build_slice(target: Path, first: int, step: int, repos: int) -> None:
    """Repos `first`, `first + step`, ... below `repos`."""
    node = _open_for_build(target)
    os.fsync = lambda _fd: None  # this build process only; the caller syncs once at the end
    started = time.perf_counter()
    try:
        for n, i in enumerate(range(first, repos, step), 1):
            repo = RepoId(RepoType.MODEL, f"org{i % 100}", f"lora-{i}")
            node.repos.create(ADMIN, repo, private=False)
            readme = f"---\nlicense: mit\ntags: [lora]\n---\n# LoRA {i}\n".encode()
            ops = [AddBytes("README.md", readme)]
            node.commits.commit(ADMIN, repo, "main", title="card", message="", operations=ops)
            if first % step == 0 and n % 1000 == 0:
                rate = n * step / (time.perf_counter() - started)
                print(f"  fixture: ~{n * step} repos ({rate:.0f}/s)", flush=True)
    finally:
        node.close()


def _open_for_build(target: Path) -> Runtime:
    node = Runtime.open(
        Settings(data_dir=target, index={"enabled": False}, scan={"enabled": False})
    )
    event.listen(node.db.engine, "connect", _build_pragmas)
    node.db.engine.dispose()  # pooled connections reopen with the build's pragmas
    node.identity  # noqa: B018 - stored on first use
    return node


def _build_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB
    cursor.close()


def get(url: str, path: str) -> dict[str, object]:
    headers = {"authorization": f"Bearer {TOKEN}"}
    body = httpx.get(f"{url}{path}", headers=headers, timeout=600).json()
    assert isinstance(body, dict | list)
    return body if isinstance(body, dict) else {"items": body}


def join(home_url: str, home_head: int, digest: object, mode: str, root: Path) -> Timed:
    """Seconds from `peer add` until the replica's state equals the home's."""
    data = root / f"replica-{mode}"
    log = root / f"replica-{mode}.log"
    env = {**QUIET, "MODELYARD_SYNC__BATCH": "5000"}
    with node_process(data, TOKEN, log, env) as replica:
        started = time.perf_counter()
        subprocess.run(
            [modelyard_executable(), "peer", "add", home_url, "--token", TOKEN]
            + ["--bootstrap", mode, "--blobs", "lazy", "--data-dir", str(data)],
            check=True,
            capture_output=True,
        )
        added = time.perf_counter() - started
        while True:
            peers = get(replica.url, "/v1/peers")["items"]
            assert isinstance(peers, list)
            if peers and peers[0]["cursor"] >= home_head:
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        assert get(replica.url, "/v1/sync/state-digest")["digest"] == digest, mode
    text = log.read_text()
    applied = re.search(r"snapshot applied .*", text)
    inside = re.search(r"peer joined from snapshot .* seconds=([0-9.]+)", text)
    return Timed(
        seconds,
        added,
        os.getloadavg()[0],
        float(inside.group(1)) if inside else None,
        applied.group(0) if applied else "",
    )


@dataclass(frozen=True)
class Timed:
    seconds: float
    add: float  # of which `modelyard peer add` (a process of its own) took
    load: float  # the 1-minute load average as the join ended
    bootstrap: float | None  # the replica's own time to stream, verify and apply the snapshot
    applied: str  # its log line for the apply (chunks written as rows, chunks replayed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=100_000)
    parser.add_argument("--modes", default="snapshot,replay")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--build-workers", type=int, default=4)
    args = parser.parse_args()
    fixture = WORK / f"join-{args.repos}-v{FIXTURE_VERSION}"
    if not fixture.exists():
        print(f"building the fixture: {args.repos} repos", flush=True)
        build_fixture(fixture.with_suffix(".tmp"), args.repos, args.build_workers)
        fixture.with_suffix(".tmp").rename(fixture)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        root = Path(tmp)
        shutil.copytree(fixture, root / "home")
        with node_process(root / "home", TOKEN, root / "home.log", QUIET) as home:
            head = int(get(home.url, "/v1/health")["serial"])  # type: ignore[call-overload]
            digest = get(home.url, "/v1/sync/state-digest")["digest"]
            load = os.getloadavg()[0]
            rss = peak_rss_mib(home.pid)
            timed = {
                mode: join(home.url, head, digest, mode, root) for mode in args.modes.split(",")
            }
            rss = (rss, peak_rss_mib(home.pid))
    report(args.repos, head, load, rss, timed, not args.no_record)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def report(
    repos: int,
    head: int,
    load: float,
    rss: tuple[float, float],
    timed: dict[str, Timed],
    record: bool,
) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    baseline = timed["replay"].seconds if "replay" in timed else None
    rows = [
        f"| {mode} | {t.seconds:.1f} s | {t.add:.1f} s | {head / t.seconds:,.0f} |"
        f" {f'{baseline / t.seconds:.2f}x' if baseline else 'n/a'} |"
        f" {f'{t.bootstrap:.1f} s' if t.bootstrap is not None else '-'} | {t.load:.1f} |"
        for mode, t in timed.items()
    ]
    notes = [f"  - {mode}: `{t.applied}`" for mode, t in timed.items() if t.applied]
    section = "\n".join(
        [
            f"\n## Join ({stamp}, `bench/join.py --repos {repos}`)\n",
            f"- git {git_version()}; a home node of {repos} repos ({head} log entries: each repo's"
            " creation, its first commit and its card's, each moving main), embedded default"
            " (SQLite); a fresh replica per mode,"
            " blobs lazy; timed from `peer add` until the replica's cursor is at the home's head"
            " (its state digest then checked equal to the home's: it was, in every mode)."
            f" 1-minute load average {load:.1f} at the start (2 cores). The home's peak RSS"
            f" {rss[0]:.0f} MiB before serving, {rss[1]:.0f} MiB after serving every mode.\n",
            "| mode | time to join | of it `peer add` | home entries/s | vs replay (same run) |"
            " the replica's own bootstrap (stream, verify, apply) | load avg at end |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *notes,
            "",
        ]
    )
    sys.stdout.write(section)
    if record:
        append_results(section)


if __name__ == "__main__":
    main()
