"""Pages benchmark: latency of the server-rendered HTML pages (repo page, search page, home
page) on 100 000 repos on the embedded default (SQLite + local disk), next to `GET /v1/health`
in the same run.

Run: `.venv/bin/python bench/pages.py [--repos 100000] [--requests 1000] [--wrk-seconds 5]`
(`--repos 2000` for a quick try; `--no-record` to skip RESULTS.md). The fixture reuses
bench/search.py's (repos with generated model cards, written through the node's own services,
built once into bench/.work/ and shared with search.py), adds a small real .safetensors file
in a second commit to one repo in `--weights-every`, indexes everything, and is kept for later
runs. Each run copies it, starts one `modelyard serve` on it (indexer and scanner off: nothing
moves under the measurement), and times each target with one client, sequentially, over a
keep-alive connection: p50 / p99 and requests/s. With wrk installed it also takes the
requests/s of each target under wrk -t2 -c16 for `--wrk-seconds`, the pages' URLs rotating.

Goals (p99 of the sequential run): repo page < 50 ms, search page < 100 ms; each page's p99 is
also given as a ratio to the health p99, the HTTP floor of this node and client.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search as cards
from _clients import BenchError, missing_tools, parse_wrk
from _procs import node as node_process
from _report import append_results, git_version

from registry.domain.names import RepoId, RepoType
from registry.runtime import Runtime
from registry.service.commits import AddBytes
from registry.settings import Settings

WORK = cards.WORK
FIXTURE_VERSION = 3  # of what this file adds on top of search.py's fixture
SCAN_BATCH = 500
REPO_MS = 50.0  # the goals: p99 of the repo page, of the search page
SEARCH_MS = 100.0
WRK_CONNECTIONS = 16  # a few browsers' worth; enough to keep one node process busy
ENV = {"MODELYARD_INDEX__ENABLED": "false", "MODELYARD_SCAN__ENABLED": "false"}


def repo_ids(repos: int) -> list[RepoId]:
    """The repos search.py's fixture wrote, in order (its card generator is deterministic)."""
    rng = random.Random(cards.FIXTURE_VERSION)
    authors = cards.AUTHORS
    return [
        RepoId(RepoType.MODEL, authors[i % len(authors)], cards.card(rng, i)[0])
        for i in range(repos)
    ]


def safetensors(i: int) -> bytes:
    """A small valid safetensors file: two F16 tensors and kohya-style LoRA metadata."""
    shapes = {"lora_down.weight": [8, 64], "lora_up.weight": [64, 8]}
    header: dict[str, object] = {
        "__metadata__": {
            "ss_network_module": "networks.lora",
            "ss_network_dim": "8",
            "ss_output_name": f"bench-{i}",
            "ss_tag_frequency": json.dumps({"1_img": {f"trg{i}": 40, "solo": 12}}),
        }
    }
    offset = 0
    for name, shape in shapes.items():
        size = shape[0] * shape[1] * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + random.Random(i).randbytes(offset)


def card_fixture(repos: int) -> Path:
    """search.py's fixture for `repos` repos, built first if it is not there yet."""
    fixture = WORK / f"search-fixture-v{cards.FIXTURE_VERSION}-{repos}"
    if not (fixture / "complete").exists():
        shutil.rmtree(fixture, ignore_errors=True)
        print(f"building the card fixture: {repos} repos into {fixture} (once)", flush=True)
        cards.build_fixture(fixture, repos)
        (fixture / "complete").write_text("ok\n")
    return fixture


def add_weights(data_dir: Path, repos: list[RepoId], every: int) -> None:
    """A second commit with a .safetensors file in one repo in `every`, then every file
    scanned and hashed, as the node's scanner and hash job would have done by then (pages show
    the verdicts; a run measures pages, not those jobs catching up)."""
    node = Runtime.open(
        Settings(
            data_dir=data_dir,
            index={"enabled": False},
            scan={"enabled": False},
            hashes={"batch": SCAN_BATCH},
        )
    )
    started = time.perf_counter()
    try:
        weighted = range(0, len(repos), every)
        for n, i in enumerate(weighted):
            operations = [AddBytes(f"{repos[i].name}.safetensors", safetensors(i))]
            node.commits.commit(
                cards.ADMIN, repos[i], "main", title="weights", message="", operations=operations
            )
            if n % 2000 == 1999:
                rate = (n + 1) / (time.perf_counter() - started)
                print(f"  weights: {n + 1} repos ({rate:.0f}/s)", flush=True)
        scanned = sum(
            node.scans.run_once(SCAN_BATCH) for _ in range(len(weighted) // SCAN_BATCH + 2)
        )
        print(f"  scanned {scanned} files", flush=True)
        hashed = 0
        while done := node.model_hashes.run_once():  # AutoV3/AutoV1, as the node's job would
            hashed += done
        print(f"  hashed {hashed} safetensors files", flush=True)
    finally:
        node.close()


def fixture(repos: list[RepoId], every: int) -> Path:
    """Cards, weights in one repo in `every`, fully indexed; built once, then reused."""
    target = WORK / f"pages-fixture-v{FIXTURE_VERSION}-{len(repos)}-w{every}"
    if (target / "complete").exists():
        return target
    source = card_fixture(len(repos))
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    print(f"adding weights to one repo in {every}", flush=True)
    add_weights(target, repos, every)
    entries, seconds = cards.index_until(target, None)
    print(f"indexed {entries} change-log entries in {seconds:.1f} s", flush=True)
    (target / "complete").write_text("ok\n")
    return target


_Params = Callable[[], dict[str, str]]


@dataclass(frozen=True)
class Target:
    """One thing measured: a label, the URLs it cycles through, and its p99 goal (ms)."""

    label: str
    urls: list[str]
    goal_ms: float | None = None
    expect: str = "</html>"  # in every answer: a 404 or a cut-off page is not a fast page
    optional: bool = False  # left out when the node does not serve it (a page still new)


def repo_url(repo: RepoId) -> str:
    return f"/{repo.full_name}"


def search_url(params: dict[str, str]) -> str:
    return "/search?" + urlencode(params) if params else "/search"


def _searches(rng: random.Random, repos: int) -> tuple[list[_Params], list[_Params]]:
    """Search-page queries: by words, and with the form's filters (and none at all)."""
    words, kinds = cards.WORDS, cards.KINDS
    by_words: list[_Params] = [
        lambda: {"q": rng.choice(words)},  # a common word: thousands of matches
        lambda: {"q": f"{rng.choice(words)} {rng.choice(words)}"},
        lambda: {"q": rng.choice(words)[:3]},  # a prefix
        lambda: {"q": f"trg{rng.randrange(repos)}"},  # a trigger word: one match
    ]
    filtered: list[_Params] = [
        lambda: {"q": rng.choice(words), "kind": rng.choice(kinds)},
        lambda: {"q": rng.choice(words), "sort": "downloads"},
        lambda: {"kind": rng.choice(kinds), "sort": "downloads"},
        lambda: {"tag": f"batch{rng.randrange(100)}"},
        lambda: {"base_model": rng.choice(cards.BASES), "kind": rng.choice(kinds)},
        dict,  # no query at all: the newest repos
    ]
    return by_words, filtered


def targets(repos: list[RepoId], every: int, count: int) -> list[Target]:
    """What is measured, in order; health first, the floor everything is compared to. Repo
    pages of repos not seen before in this run (the node's read cache is cold for each), and
    one repo again and again (all cached)."""
    rng = random.Random(11)
    varied = [repos[i] for i in rng.sample(range(len(repos)), min(count, len(repos)))]
    weighted = range(0, len(repos), every)
    with_weights = [repos[i] for i in rng.sample(weighted, min(count, len(weighted)))]
    hot = repos[len(repos) // 2 - len(repos) // 2 % every]  # one with weights
    authors = list(dict.fromkeys(r.namespace for r in varied))
    by_words, filtered = _searches(rng, len(repos))

    def mix(shapes: list[_Params]) -> list[str]:
        return [search_url(shapes[i % len(shapes)]()) for i in range(count)]

    return [
        Target("`GET /v1/health` (baseline)", ["/v1/health"], expect='"node_id"'),
        Target("repo page, a different repo each time", [repo_url(r) for r in varied], REPO_MS),
        Target("repo page, repos with weights", [repo_url(r) for r in with_weights], REPO_MS),
        Target("repo page, the same repo", [repo_url(hot)], REPO_MS),
        Target("search page, `q=` words", mix(by_words), SEARCH_MS),
        Target(
            "search page, filters (kind, sort=downloads, tag, base model)", mix(filtered), SEARCH_MS
        ),
        Target("home page `/`", ["/"]),
        Target("author page `/{owner}`", [f"/{a}" for a in authors], optional=True),
    ]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass(frozen=True)
class Timed:
    latencies: list[float]  # seconds
    seconds: float  # wall time of the whole sequence
    wrk_rate: float | None = None  # requests/s under wrk, when taken
    wrk_p99_ms: float | None = None

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def time_urls(http: httpx.Client, urls: list[str], count: int, expect: str = "") -> Timed:
    """`count` sequential GETs cycling through `urls`; each must answer 200 with `expect` in
    it, so that a 404 page cannot pass for a fast repo page."""
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        url = urls[i % len(urls)]
        begin = time.perf_counter()
        response = http.get(url)
        latencies.append(time.perf_counter() - begin)
        if response.status_code != 200 or expect not in response.text:
            raise BenchError(f"GET {url} -> {response.status_code}: {response.text[:500]}")
    return Timed(latencies, time.perf_counter() - started)


_ROTATE_LUA = """\
local paths, i = {{{paths}}}, 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i - 1) % #paths + 1])
end
"""


def wrk_rate(base: str, urls: list[str], seconds: int, lua: Path) -> tuple[float, float]:
    """(requests/s, p99 ms) of wrk -t2 -c16 rotating through `urls`; non-200s are errors."""
    lua.write_text(_ROTATE_LUA.format(paths=", ".join(json.dumps(u) for u in urls[:2000])))
    command = ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout=10s"]
    out = subprocess.run(
        [*command, "-s", str(lua), base + urls[0]],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise BenchError(f"wrk exited {out.returncode}: {out.stderr.strip()}")
    rate = parse_wrk(out.stdout)
    if rate.errors:
        raise BenchError(f"wrk saw {rate.errors} errors on {urls[0]}:\n{out.stdout}")
    return rate.per_second, rate.p99_ms


def sequential(http: httpx.Client, plan: list[Target], count: int) -> dict[str, Timed]:
    """Each target in turn, then health again, merged with its first turn, so that the floor
    spans the whole run."""
    timed: dict[str, Timed] = {}
    for target in plan:
        if target.optional and http.get(target.urls[0]).status_code != 200:
            print(f"  {target.label}: not served here, left out", flush=True)
            continue
        result = timed[target.label] = time_urls(http, target.urls, count, target.expect)
        print(f"  {target.label}: p50 {result.p(50):.1f} ms, p99 {result.p(99):.1f} ms")
    health = plan[0]
    first, again = timed[health.label], time_urls(http, health.urls, count, health.expect)
    timed[health.label] = Timed(first.latencies + again.latencies, first.seconds + again.seconds)
    return timed


def measure(
    data_dir: Path, log: Path, plan: list[Target], count: int, wrk_seconds: int
) -> dict[str, Timed]:
    """Every target against one node process: one client in sequence, then wrk if asked."""
    with node_process(data_dir, cards.TOKEN, log, env=ENV) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            time_urls(http, ["/v1/health", "/", "/search?q=warm"], 30)  # warm the connection
            timed = sequential(http, plan, count)
        for target in (t for t in plan if t.label in timed) if wrk_seconds > 0 else ():
            rate, p99 = wrk_rate(server.url, target.urls, wrk_seconds, WORK / "pages-wrk.lua")
            old = timed[target.label]
            timed[target.label] = Timed(old.latencies, old.seconds, rate, p99)
    return timed


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def render(args: argparse.Namespace, plan: list[Target], timed: dict[str, Timed]) -> str:
    health = timed[plan[0].label]
    wrk_note = (
        f"wrk -t2 -c{WRK_CONNECTIONS} for {args.wrk_seconds} s per target, its URLs rotating"
        if args.wrk_seconds > 0
        else "wrk not run"
    )
    lines = [
        f"\n## Pages ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"`bench/pages.py --repos {args.repos} --requests {args.requests} "
        f"--wrk-seconds {args.wrk_seconds} --weights-every {args.weights_every}`)\n",
        f"- git {git_version()}; machine: 2 cores (shared), loopback. SQLite + local disk (the "
        f"embedded default), one `modelyard serve` process (indexer and scanner off), "
        f"{args.repos} repos with cards, one in {args.weights_every} with a .safetensors file "
        "in a second commit, all indexed and scanned.",
        f"- one client (httpx, keep-alive), sequential: {args.requests} GETs per target, each "
        f"checked for 200; health timed at the start and at the end (merged). {wrk_note} "
        "(after the sequential pass: its repo pages are in the node's read cache by then).",
        f"- 1-minute load average at the end: {_load():.2f}.",
        "",
        "| target | p50 ms | p99 ms | max ms | req/s (1 client) | p99 / health p99 | "
        f"req/s (wrk c{WRK_CONNECTIONS}) | wrk p99 ms | goal p99 | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in (t for t in plan if t.label in timed):
        t = timed[target.label]
        p99 = t.p(99)
        goal = "" if target.goal_ms is None else f"< {target.goal_ms:.0f} ms"
        met = "" if target.goal_ms is None else ("yes" if p99 < target.goal_ms else "**no**")
        lines.append(
            f"| {target.label} | {t.p(50):.1f} | {p99:.1f} | {max(t.latencies) * 1000:.1f} | "
            f"{t.rate:.0f} | {p99 / health.p(99):.1f}x | {_cell(t.wrk_rate, '.0f')} | "
            f"{_cell(t.wrk_p99_ms, '.1f')} | {goal} | {met} |"
        )
    return "\n".join(lines) + "\n"


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000, help="sequential GETs per target")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="0: no wrk")
    parser.add_argument("--weights-every", type=int, default=10)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.wrk_seconds > 0 and missing_tools(["wrk"]):
        print("wrk is not installed (`apt-get install -y wrk`): its rates are left out")
        args.wrk_seconds = 0
    repos = repo_ids(args.repos)
    source = fixture(repos, args.weights_every)
    run = WORK / "pages-run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(source, run)
    plan = targets(repos, args.weights_every, args.requests)
    timed = measure(run, WORK / "pages-node.log", plan, args.requests, args.wrk_seconds)
    section = render(args, plan, timed)
    print(section)
    if not args.no_record:
        append_results(section)
    shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
