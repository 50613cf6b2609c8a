"""Search benchmark: latency of /v1/search on 100 000 repos on the embedded default (SQLite),
with the index current and with it 10 000 repos behind.

Run: `.venv/bin/python bench/search.py [--repos 100000] [--behind 10000] [--queries 600]`
(`--no-record` to skip RESULTS.md). The fixture (repos with generated model cards, written
through the node's own services, ~10 ms a repo) is built once into bench/.work/ and reused.
Each run copies it, indexes all but the newest `--behind` repos, starts `modelyard serve`
(indexer off, so the lag stays put), and times a fixed query mix over HTTP; then indexes the
rest and times the same mix again. Baselines in the same run: `GET /v1/health` through the
same client (the HTTP floor), and the bare FTS5 query through the stdlib `sqlite3`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _procs import node as node_process
from _report import append_results, git_version

from registry.domain.access import Principal
from registry.domain.names import RepoId, RepoType
from registry.domain.search import tokens
from registry.runtime import Runtime
from registry.service.commits import AddBytes
from registry.settings import Settings

WORK = Path(__file__).with_name(".work")
TOKEN = "myd_bench_admin_token"
FIXTURE_VERSION = 1
KINDS = ["checkpoint", "lora", "embedding", "vae", "controlnet", "workflow"]
BASES = ["SD 1.5", "SDXL 1.0", "Pony", "Flux.1 D", "Illustrious", "SD 3.5"]
WORDS = (
    "anime photo ink pixel watercolor portrait landscape dragon knight castle neon cyber "
    "forest ocean desert city robot witch samurai sketch oil pastel retro noir fantasy "
    "horror cute chibi realistic painterly cinematic vintage gothic floral mecha space"
).split()
AUTHORS = [f"creator{i:03d}" for i in range(500)]
ADMIN = Principal("admin", is_admin=True, can_write=True)


def card(rng: random.Random, i: int) -> tuple[str, bytes]:
    words = rng.sample(WORDS, 6)
    name = f"{words[0]}-{words[1]}-{i}"
    text = (
        f"---\nkind: {rng.choice(KINDS)}\nbase_model: {rng.choice(BASES)}\n"
        f"tags: [{words[2]}, {words[3]}, batch{i % 100}]\ntrigger_words: [trg{i}, {words[4]}]\n"
        f"license: openrail\n---\n# {name}\n\nA {words[5]} {words[2]} model, number {i}.\n"
    )
    return name, text.encode()


def build_fixture(target: Path, repos: int) -> None:
    """`repos` repos with cards, through the node's services (the real write path)."""
    node = Runtime.open(
        Settings(data_dir=target, index={"enabled": False}, scan={"enabled": False})
    )
    rng = random.Random(FIXTURE_VERSION)
    started = time.perf_counter()
    try:
        for i in range(repos):
            name, text = card(rng, i)
            repo = RepoId(RepoType.MODEL, AUTHORS[i % len(AUTHORS)], name)
            node.repos.create(ADMIN, repo, private=False)
            operations = [AddBytes("README.md", text)]
            node.commits.commit(
                ADMIN, repo, "main", title="card", message="", operations=operations
            )
            if i % 5000 == 4999:
                rate = (i + 1) / (time.perf_counter() - started)
                print(f"  fixture: {i + 1} repos ({rate:.0f}/s)", flush=True)
    finally:
        node.close()


def index_until(data_dir: Path, serial: int | None) -> tuple[int, float]:
    """Run the indexer up to `serial` (None: the head); returns (entries, seconds)."""
    node = Runtime.open(
        Settings(data_dir=data_dir, index={"enabled": False}, scan={"enabled": False})
    )
    done, started = 0, time.perf_counter()
    try:
        while True:
            left = (
                serial if serial is not None else node.db.head_serial()
            ) - node.indexer.position().cursor
            if left <= 0:
                return done, time.perf_counter() - started
            done += node.indexer.run_once(batch=min(500, left))
    finally:
        node.close()


def serial_after(data_dir: Path, repos: int) -> int:
    """The change-log serial once the first `repos` repos were written."""
    db = sqlite3.connect(data_dir / "modelyard.db")
    try:
        created = db.execute(
            "SELECT serial FROM change WHERE kind = 'repo.upsert' ORDER BY serial LIMIT 1 OFFSET ?",
            (repos,),
        ).fetchone()
    finally:
        db.close()
    return int(created[0]) - 1


def query_mix(count: int) -> list[dict[str, str]]:
    rng = random.Random(7)
    shapes: list[Callable[[], dict[str, str]]] = [
        lambda: {"q": rng.choice(WORDS)},  # a common word: thousands of matches
        lambda: {"q": f"{rng.choice(WORDS)} {rng.choice(WORDS)}"},
        lambda: {"q": rng.choice(WORDS)[:3]},  # a prefix
        lambda: {"q": f"trg{rng.randrange(100_000)}"},  # a trigger word: one match
        lambda: {"tag": f"batch{rng.randrange(100)}"},
        lambda: {"kind": rng.choice(KINDS)},
        lambda: {"base_model": rng.choice(BASES), "kind": rng.choice(KINDS)},
        lambda: {"author": rng.choice(AUTHORS)},
        lambda: {"q": rng.choice(WORDS), "kind": "lora", "sort": "downloads"},
        dict,  # the front page: newest first
    ]
    return [shapes[i % len(shapes)]() for i in range(count)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def time_queries(url: str, queries: list[dict[str, str]]) -> tuple[list[float], dict[str, object]]:
    latencies: list[float] = []
    last: dict[str, object] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for params in queries:
            started = time.perf_counter()
            response = http.get("/v1/search", params={**params, "limit": 20})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            last = response.json()["index"]
    return latencies, last


def time_health(url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.get("/v1/health").raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def time_bare_fts(data_dir: Path, queries: list[dict[str, str]]) -> list[float]:
    """The same words straight into FTS5 (ids only, newest first, 21 rows): the index's floor."""
    db = sqlite3.connect(data_dir / "modelyard.db")
    latencies = []
    try:
        for params in queries:
            words = tokens(params.get("q", ""))
            if not words:
                continue
            started = time.perf_counter()
            db.execute(
                "SELECT r.id FROM repo r WHERE r.id IN (SELECT rowid FROM search_fts WHERE "
                "search_fts MATCH ?) ORDER BY r.updated_ms DESC LIMIT 21",
                (" AND ".join(f'"{w}"*' for w in words),),
            ).fetchall()
            latencies.append(time.perf_counter() - started)
    finally:
        db.close()
    return latencies


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.1f}"


@dataclass(frozen=True)
class Measured:
    latencies: list[float]
    index: dict[str, object]  # the last answer's index report
    cold: float  # the first search after start (builds the pending set)
    health: list[float]


def measure(data_dir: Path, log: Path, queries: list[dict[str, str]]) -> Measured:
    env = {"MODELYARD_INDEX__ENABLED": "false", "MODELYARD_SCAN__ENABLED": "false"}
    with node_process(data_dir, TOKEN, log, env=env) as server:
        cold_started = time.perf_counter()
        time_queries(server.url, [{"q": "cold"}])
        cold = time.perf_counter() - cold_started
        time_queries(server.url, queries[:50])  # warm the connection and caches
        latencies, index = time_queries(server.url, queries)
        health = time_health(server.url, len(queries))
    return Measured(latencies, index, cold, health)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=100_000)
    parser.add_argument("--behind", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    fixture = WORK / f"search-fixture-v{FIXTURE_VERSION}-{args.repos}"
    if not (fixture / "complete").exists():
        shutil.rmtree(fixture, ignore_errors=True)
        print(f"building the fixture: {args.repos} repos into {fixture} (once)", flush=True)
        build_fixture(fixture, args.repos)
        (fixture / "complete").write_text("ok\n")
    run = WORK / "search-run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(fixture, run)
    log = WORK / "search-node.log"
    queries = query_mix(args.queries)

    partial, partial_s = index_until(run, serial_after(run, args.repos - args.behind))
    print(f"indexed {partial} entries in {partial_s:.1f} s; {args.behind} repos left behind")
    behind = measure(run, log, queries)
    rest, rest_s = index_until(run, None)
    print(f"indexed the remaining {rest} entries in {rest_s:.1f} s")
    current = measure(run, log, queries)
    bare = time_bare_fts(run, queries)

    rate = (partial + rest) / (partial_s + rest_s)
    lines = [
        f"\n## Search ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"`bench/search.py --repos {args.repos} --behind {args.behind} "
        f"--queries {args.queries}`)\n",
        f"- git {git_version()}; SQLite (embedded default), one `modelyard serve` process, "
        f"sequential queries over HTTP (httpx, keep-alive), limit 20, {len(queries)} queries "
        "in a fixed mix (common word, two words, prefix, trigger word, tag, kind, base model + "
        "kind, author, word + kind sorted by downloads, front page).",
        f"- indexer throughput: {rate:.0f} change-log entries/s "
        f"({partial + rest} entries, ~{(partial + rest) / args.repos:.1f} per repo).",
        "",
        "| index | p50 ms | p99 ms | max ms | first query ms | pending repos | goal p99 | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, result, goal in (("current", current, 50), (f"{args.behind} behind", behind, 250)):
        lat = result.latencies
        p99 = percentile(lat, 99) * 1000
        lines.append(
            f"| {label} | {ms(lat, 50)} | {p99:.1f} | {max(lat) * 1000:.1f} | "
            f"{result.cold * 1000:.0f} | {result.index['pending_repos']} | < {goal} | "
            f"{'yes' if p99 < goal else '**no**'} |"
        )
    health, cur = current.health, current.latencies
    lines += [
        "",
        f"- baselines in this run: `GET /v1/health` p50 {ms(health, 50)} ms, p99 {ms(health, 99)} "
        f"ms (the HTTP floor; search p50 is {percentile(cur, 50) / percentile(health, 50):.1f}x "
        f"it); the bare FTS5 query (stdlib sqlite3, word queries only) p50 {ms(bare, 50)} ms, "
        f"p99 {ms(bare, 99)} ms.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_record:
        append_results(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
