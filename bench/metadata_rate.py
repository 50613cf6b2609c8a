"""Metadata request rate: model info and resolve HEAD on the embedded default (SQLite + data
dir, one process), on one process with PostgreSQL + S3, and on two processes of that node.

Run: `.venv/bin/python bench/metadata_rate.py [--seconds 6] [--reps 3]` (`--no-record` to skip
RESULTS.md). Needs wrk and hey (`apt-get install -y wrk hey`), the machine's PostgreSQL on
127.0.0.1:5432 (trust auth, user postgres) and moto[server] (the dev extra). In one run it
starts `moto_server`, makes a fresh database (dropped at the end) and starts three `modelyard
serve` processes, all stopped by PID at the end; the setups take turns rep by rep, so a change
in what else the machine runs spreads over all of them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import _procs
import boto3
import httpx
import psycopg
from _clients import (
    WRK_CONNECTIONS,
    WRK_THREADS,
    BenchError,
    Rate,
    hey_head_spread,
    missing_tools,
    wrk,
)
from _report import append_results, git_version
from transfer import expect_status, hub_error, node_version, print_logs, set_hf_env

REPO = "admin/meta"
WEIGHTS = "model.safetensors"
README = b"---\nlicense: mit\ntags: [bench]\n---\n# meta\n\nA fixture for bench/metadata_rate.py.\n"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
BUCKET = "modelyard-bench"
NODE_ID = "bench"
SETTLE_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
EXIT_MISSING = 2
REQUEST_TIMEOUT = 20  # seconds: hey's default, given to wrk too (its own is 2 s)
MEASURES = ("model_info", "resolve HEAD")


class MissingPrerequisiteError(BenchError):
    """A tool or service this run needs is not there."""


@dataclass(frozen=True)
class Setup:
    """Processes serving one node, and the commit uploaded to it."""

    label: str
    nodes: tuple[_procs.Server, ...]
    sha: str

    def path(self, measure: str) -> str:
        if measure == "model_info":
            return f"/api/models/{REPO}/revision/{self.sha}"
        return f"/{REPO}/resolve/{self.sha}/{WEIGHTS}"


@dataclass(frozen=True)
class Sample:
    """One fixed-duration load run, with the CPU the node and the machine spent meanwhile."""

    rate: Rate
    node_cores: float  # CPU seconds of the setup's node processes per wall second
    machine_cores: float  # CPU seconds of the whole machine per wall second


@dataclass
class Results:
    seconds: int
    reps: int
    labels: list[str] = field(default_factory=list)  # the setups, in the order they were made
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="each load run (6)")
    parser.add_argument("--reps", type=int, default=3, help="load runs per setup and route (3)")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    for name, low, high in (("seconds", 1, 60), ("reps", 1, 10)):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} must be within {low}..{high}")
    return args


def check_prerequisites() -> str:
    """Fail early on a missing tool or database server; returns PostgreSQL's version."""
    missing = missing_tools(["wrk", "hey"])
    if missing:
        raise MissingPrerequisiteError(f"missing {', '.join(missing)}: apt-get install -y wrk hey")
    if not Path(_procs.moto_executable()).exists():
        raise MissingPrerequisiteError("moto_server is missing: pip install -e '.[dev]'")
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5) as pg:
            row = pg.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as exc:
        raise MissingPrerequisiteError(f"PostgreSQL on 127.0.0.1:5432: {exc}") from exc
    return str(row[0]).split()[0] if row else "?"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database for this run (its URL), dropped at the end, connections and all."""
    name = f"myd_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def s3_env(endpoint: str) -> dict[str, str]:
    """boto3's usual chain, pointed at moto, for the node processes; and the bucket made."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).create_bucket(Bucket=BUCKET)
    return env


def tiny_safetensors() -> bytes:
    """A valid safetensors file with one 2x2 F32 tensor (so model info has weights)."""
    header = b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(16)


def publish(node_url: str, token: str) -> str:
    """Create the repo and commit a README and a small weights file through huggingface_hub."""
    from huggingface_hub import CommitOperationAdd, HfApi  # HF_HUB_* must be set first
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=node_url, token=token)
    operations = [
        CommitOperationAdd("README.md", README),
        CommitOperationAdd(WEIGHTS, tiny_safetensors()),
    ]
    try:
        api.create_repo(REPO)
        info = api.create_commit(REPO, operations=operations, commit_message="bench fixture")
    except HfHubHTTPError as exc:
        raise hub_error(node_url, exc) from exc
    return str(info.oid)


def _settled(http: httpx.Client, setup: Setup) -> bool:
    """The upload's background work is done: scanned, indexed (no writes during the load)."""
    info = http.get(setup.path("model_info"))
    status = http.get("/v1/search/status")
    if info.status_code != 200 or status.status_code != 200:
        return False
    scans_done = info.json().get("securityRepoStatus", {}).get("scansDone") is True
    return scans_done and status.json().get("behind_entries") == 0


def settle(setup: Setup) -> None:
    """Wait (bounded) until every process sees the upload settled; then one request of each
    kind per process, so that every read cache is warm and a failing route fails loudly."""
    for server in setup.nodes:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not _settled(http, setup):
                if time.monotonic() > deadline:
                    raise BenchError(f"{server.name}: upload not settled in {SETTLE_TIMEOUT}s")
                time.sleep(POLL_INTERVAL)
        expect_status("GET", server.url + setup.path("model_info"))
        expect_status("HEAD", server.url + setup.path("resolve HEAD"))


def load(setup: Setup, measure: str, seconds: int, root: Path) -> Rate:
    """The same load generator and thread count for every setup; spread over its processes."""
    if measure == "model_info":
        ports = [int(httpx.URL(server.url).port or 0) for server in setup.nodes]
        url = setup.nodes[0].url + setup.path(measure)
        return wrk(url, seconds, script_dir=root, ports=ports, timeout=REQUEST_TIMEOUT)
    urls = [server.url + setup.path(measure) for server in setup.nodes]
    return hey_head_spread(urls, seconds, root)


def measure(setup: Setup, what: str, seconds: int, root: Path) -> Sample:
    pids = [server.pid for server in setup.nodes]
    node_before = sum(_procs.cpu_seconds(pid) for pid in pids)
    machine_before, started = _procs.machine_busy_seconds(), time.perf_counter()
    rate = load(setup, what, seconds, root)
    wall = time.perf_counter() - started
    node_cpu = sum(_procs.cpu_seconds(pid) for pid in pids) - node_before
    machine_cpu = _procs.machine_busy_seconds() - machine_before
    return Sample(rate, node_cpu / wall, machine_cpu / wall)


def measure_all(setups: Sequence[Setup], root: Path, res: Results) -> None:
    """Rep by rep, every setup in turn (starting one later each rep), for each route."""
    for rep in range(res.reps):
        for what in MEASURES:
            for i in range(len(setups)):
                setup = setups[(i + rep) % len(setups)]
                sample = measure(setup, what, res.seconds, root)
                res.samples.setdefault((setup.label, what), []).append(sample)
                print(
                    f"  rep {rep + 1} {what:<12} {setup.label:<40} "
                    f"{sample.rate.per_second:8.0f} req/s, p50 {sample.rate.p50_ms:.1f} ms, "
                    f"p99 {sample.rate.p99_ms:.1f} ms, errors {sample.rate.errors}, CPU node "
                    f"{sample.node_cores:.2f} / machine {sample.machine_cores:.2f} cores",
                    flush=True,
                )


def start_setups(stack: ExitStack, root: Path, token: str) -> list[Setup]:
    """moto_server, the database and the three node processes; `stack` stops them all."""
    moto = stack.enter_context(_procs.moto_s3(root / "moto"))
    shared = {
        "MODELYARD_DATABASE_URL": stack.enter_context(postgres_database()),
        "MODELYARD_BLOB_STORE": f"s3://{BUCKET}/node",
        "MODELYARD_NODE_ID": NODE_ID,
        **s3_env(moto.url),
    }
    embedded = stack.enter_context(
        _procs.node(root / "embedded", token, root / "node-embedded.log")
    )
    first = stack.enter_context(_procs.node(root / "pg-1", token, root / "node-pg-1.log", shared))
    second = stack.enter_context(_procs.node(root / "pg-2", token, root / "node-pg-2.log", shared))
    print(
        f"moto_server pid {moto.pid}; embedded node pid {embedded.pid}; "
        f"Postgres + S3 node pids {first.pid}, {second.pid}",
        flush=True,
    )
    sha_embedded, sha_shared = publish(embedded.url, token), publish(first.url, token)
    return [
        Setup("embedded: SQLite + data dir, 1 process", (embedded,), sha_embedded),
        Setup("Postgres + S3, 1 process", (first,), sha_shared),
        Setup("Postgres + S3, 2 processes", (first, second), sha_shared),
    ]


def run(args: argparse.Namespace, root: Path, token: str, pg_version: str) -> Results:
    res = Results(seconds=args.seconds, reps=args.reps)
    res.load.append(os.getloadavg()[0])
    with ExitStack() as stack:
        setups = start_setups(stack, root, token)
        res.labels = [setup.label for setup in setups]
        for setup in setups:
            settle(setup)
        res.versions = [
            f"node {node_version(setups[0].nodes[0].url)}",
            f"PostgreSQL {pg_version}",
        ]
        print(f"load: {args.reps} reps x {len(setups)} setups x 2 routes x {args.seconds} s")
        measure_all(setups, root, res)
    res.load.append(os.getloadavg()[0])
    return res


def _median(samples: list[Sample], value: str) -> float:
    pick = {
        "rate": lambda s: s.rate.per_second,
        "p50": lambda s: s.rate.p50_ms,
        "p99": lambda s: s.rate.p99_ms,
        "node": lambda s: s.node_cores,
        "machine": lambda s: s.machine_cores,
    }[value]
    return statistics.median(pick(s) for s in samples)


def _cells(samples: list[Sample]) -> str:
    errors = sum(s.rate.errors for s in samples)
    flag = f" (**{errors} errors**)" if errors else ""
    return (
        f"{_median(samples, 'rate'):,.0f}{flag} | {_median(samples, 'p50'):.1f} / "
        f"{_median(samples, 'p99'):.1f} | {_median(samples, 'node'):.2f} / "
        f"{_median(samples, 'machine'):.2f}"
    )


def _ratio_row(res: Results, label: str, top: str, bottom: str) -> str:
    ratios = [
        _median(res.samples[(top, what)], "rate") / _median(res.samples[(bottom, what)], "rate")
        for what in MEASURES
    ]
    return f"| {label} | " + " | ".join(f"**{ratio:.2f}x** | |" for ratio in ratios) + " |"


def _notes(res: Results) -> list[str]:
    half = WRK_CONNECTIONS // 2
    load = " / ".join(f"{value:.2f}" for value in res.load)
    return [
        f"- git {git_version()}; {'; '.join(res.versions)} (a fresh database on 127.0.0.1); "
        f"S3 is `moto_server` in its own process; one repo (README + a {len(tiny_safetensors())}"
        "-byte safetensors) uploaded through huggingface_hub to each node.",
        f"- load: `wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --timeout={REQUEST_TIMEOUT}s` on "
        f"`GET /api/models/{{repo}}/revision/{{commit}}`, `hey -c{WRK_CONNECTIONS} -cpus "
        f"{WRK_THREADS}` on `HEAD /{{repo}}/resolve/{{commit}}/{{file}}` (Debian's wrk cannot "
        f"parse HEAD answers), {res.seconds} s each, {res.reps} reps, the setups taking turns; "
        "figures are medians of the reps. On two processes the same load is split: wrk's two "
        f"threads one per port ({half} connections each, latencies merged by wrk), and one "
        f"`hey -c{half} -cpus 1` per port (latencies merged from their CSV).",
        f"- 2 cores shared by everything: the load generator ({WRK_THREADS} threads), the node "
        "process(es), the Postgres backends and moto; the other setups' processes stay up, idle. "
        "CPU columns: cores used by the measured node processes / by the whole machine. "
        f"1-minute load average at start / end: {load} (anything well above 0 at the start is "
        "someone else's work on this machine).",
    ]


def _per_rep(res: Results) -> str:
    def reps(label: str) -> str:
        info, head = (res.samples[(label, what)] for what in MEASURES)
        pairs = zip(info, head, strict=True)
        return ", ".join(f"{a.rate.per_second:,.0f} / {b.rate.per_second:,.0f}" for a, b in pairs)

    return "; ".join(f"{label.split(':')[0]}: {reps(label)}" for label in res.labels)


def render(res: Results, argline: str) -> str:
    title = (
        f"## Metadata request rate ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`bench/metadata_rate.py{' ' + argline if argline else ''}`)"
    )
    embedded, one, two = res.labels
    rows = [
        f"| {label} | {' | '.join(_cells(res.samples[(label, w)]) for w in MEASURES)} |"
        for label in res.labels
    ]
    lines = [
        "",
        title,
        "",
        *_notes(res),
        "",
        "| setup | model_info req/s | p50 / p99 ms | CPU node / all | resolve HEAD req/s "
        "| p50 / p99 ms | CPU node / all |",
        "|---|---|---|---|---|---|---|",
        *rows,
        _ratio_row(res, "Postgres 1 process / embedded", one, embedded),
        _ratio_row(res, "Postgres 2 processes / 1 process", two, one),
        "",
        f"- every rep, req/s (model_info / resolve HEAD): {_per_rep(res)}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="modelyard-metadata-bench-", dir=args.work_dir))
    try:
        pg_version = check_prerequisites()
        set_hf_env(root)
        res = run(args, root, "myd_bench_" + secrets.token_urlsafe(24), pg_version)
    except MissingPrerequisiteError as exc:
        print(f"metadata_rate.py: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except BenchError as exc:
        print(f"metadata_rate.py: FAILED: {exc}", file=sys.stderr)
        print_logs(root)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    section = render(res, " ".join(sys.argv[1:]))
    print(section)
    if not args.no_record:
        append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
