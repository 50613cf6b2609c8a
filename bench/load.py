"""Mixed load on one node: many concurrent downloads, uploads, metadata calls and bad requests
on loopback, with the node's RSS, descriptors and threads watched by PID; the download part also
against nginx serving the same files at the same URLs, as the baseline of the same run.

Run: `.venv/bin/python bench/load.py [--seconds 30] [--workers 64] [--large-mib 64]`
(`--no-record` to skip RESULTS.md). Needs Debian's nginx (`apt-get install -y nginx`). The
generator is tests/load/ (tests/e2e/test_load.py runs a CI-sized load with it); nginx and the
node are started and stopped by PID. Three phases of `--seconds` each: the download mix against
nginx, the same mix against the node, then the full mix against the node under the /proc watch.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _procs
import httpx
from _clients import BenchError, missing_tools
from _report import append_results, git_version
from transfer import node_version, print_logs

from tests.load import procwatch
from tests.load.fixture import Fixture, fixture_files, publish
from tests.load.measure import Measured, measure_load
from tests.load.ops import DOWNLOADS, MIXED
from tests.load.runner import Plan, Report, run, table

EXIT_MISSING_TOOL = 2
MB = 1e6
WARMUP_SECONDS = 5.0


class MissingToolError(BenchError):
    """A tool this run needs is not installed."""


@dataclass
class Results:
    args: argparse.Namespace
    downloads: dict[str, Report] = field(default_factory=dict)  # "nginx" / "node"
    client_cores: dict[str, float] = field(default_factory=dict)  # CPU s per wall s, by side
    node_cores: float = 0.0  # the same, of the node in its download phase
    mixed: Measured | None = None
    hwm: int = 0
    sizes: list[int] = field(default_factory=list)  # of the fixture's files
    versions: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="each of the 3 phases (30)")
    parser.add_argument("--workers", type=int, default=64, help="concurrent workers (64)")
    parser.add_argument("--large-mib", type=int, default=64, help="largest file's size (64)")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    for name, low, high in (("seconds", 5, 600), ("workers", 1, 512), ("large_mib", 8, 4096)):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be within {low}..{high}")
    return args


def serve_statically(www: Path, fixture: Fixture) -> None:
    """The fixture's files under the URL paths the download operations ask the node for."""
    for file in fixture.files:
        for url in (f"{fixture.repo}/resolve/{fixture.sha}/{file.path}", f"v1/blobs/{file.blake3}"):
            (www / url).parent.mkdir(parents=True, exist_ok=True)
            (www / url).write_bytes(file.data)


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _phase(label: str, url: str, token: str, fixture: Fixture, plan: Plan, res: Results) -> Report:
    cpu = client_cpu_seconds()
    report = run(url, token, fixture, plan)
    res.client_cores[label] = (client_cpu_seconds() - cpu) / report.seconds
    print(
        f"  {label}, download mix: {report.ops / report.seconds:,.0f} ops/s, "
        f"{report.moved / report.seconds / MB:,.0f} MB/s, {report.error_count} errors",
        flush=True,
    )
    if report.error_count:
        print("    first errors: " + "\n    ".join(report.errors), flush=True)
    return report


def measure(args: argparse.Namespace, root: Path, token: str, res: Results) -> None:
    fixture_data = fixture_files(args.large_mib)
    res.sizes = [len(f.data) for f in fixture_data]
    with _procs.node(root / "node", token, root / "node.log") as node:
        res.versions.append(f"node {node_version(node.url)}")
        with httpx.Client(base_url=node.url, headers={"authorization": f"Bearer {token}"}) as http:
            fixture = publish(http, "load", fixture_data)
        serve_statically(root / "nginx" / "www", fixture)
        downloads = Plan(seconds=args.seconds, workers=args.workers, mix=DOWNLOADS)
        with _procs.nginx(root / "nginx") as nginx:
            print(f"node pid {node.pid}, nginx pid {nginx.pid}; {args.workers} workers")
            res.downloads["nginx"] = _phase("nginx", nginx.url, token, fixture, downloads, res)
        cpu = _procs.cpu_seconds(node.pid)
        res.downloads["node"] = _phase("node", node.url, token, fixture, downloads, res)
        res.node_cores = (_procs.cpu_seconds(node.pid) - cpu) / res.downloads["node"].seconds
        mixed = Plan(seconds=args.seconds, workers=args.workers, mix=MIXED)
        res.mixed = measure_load(node.pid, node.url, token, fixture, mixed, WARMUP_SECONDS)
        print(f"  node mixed: {res.mixed.report.error_count} errors", flush=True)
        res.hwm = procwatch.peak_rss(node.pid)


def _rate(report: Report) -> tuple[float, float]:
    return report.ops / report.seconds, report.moved / report.seconds


def _download_rows(res: Results) -> list[str]:
    rows = []
    for side in ("nginx", "node"):
        report = res.downloads[side]
        ops, moved = _rate(report)
        p50 = report.tally("download resolve").percentile(0.5) * 1000
        p99 = report.tally("download resolve").percentile(0.99) * 1000
        node = f"{res.node_cores:.2f}" if side == "node" else ""
        rows.append(
            f"| {side} | {ops:,.0f} | {moved / MB:,.0f} | {p50:.0f} / {p99:.0f} | "
            f"{report.error_count} | {res.client_cores[side]:.2f} | {node} |"
        )
    (nginx_ops, nginx_moved), (node_ops, node_moved) = (
        _rate(res.downloads[side]) for side in ("nginx", "node")
    )
    rows.append(
        f"| node / nginx | **{node_ops / nginx_ops:.2f}x** | "
        f"**{node_moved / nginx_moved:.2f}x** | | | | |"
    )
    return rows


def _db_fds(targets: Counter[str]) -> int:
    return sum(n for target, n in targets.items() if Path(target).name.startswith("modelyard.db"))


def _process_lines(res: Results) -> list[str]:
    m = res.mixed
    assert m is not None
    others = [sum(t.values()) - _db_fds(t) for t in (m.open_before, m.open_after)]
    return [
        f"- node under the mixed load: RSS peak {max(m.peak_rss, res.hwm) / MB:.0f} MB (VmHWM), "
        f"median {m.median_rss(0) / MB:.0f} MB in the first half and "
        f"{m.median_rss(1) / MB:.0f} MB in the second, "
        f"{m.report.moved / max(m.peak_rss, res.hwm):.0f}x its peak RSS moved; "
        f"node {m.cores:.2f} cores.",
        f"- descriptors after the warm-up / after the load (idle both times): {m.before.fds} / "
        f"{m.after.fds}; without the database's: {others[0]} / {others[1]}; "
        f"new: {dict(m.opened) or 'none'}. Threads {m.before.threads} / {m.after.threads} "
        f"(peak {m.peak_threads}).",
    ]


def render(res: Results, argline: str) -> str:
    args, m = res.args, res.mixed
    assert m is not None
    sizes = ", ".join(f"{s >> 10} KiB" if s < 2**20 else f"{s / 2**20:.4g} MiB" for s in res.sizes)
    lines = [
        "",
        f"## Load ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`bench/load.py{' ' + argline if argline else ''}`)",
        "",
        f"- git {git_version()}; {'; '.join(res.versions)}; one `modelyard serve` (embedded "
        f"default) and nginx (one worker) on 127.0.0.1.",
        f"- client: tests/load/ (asyncio + httpx, one Python process, {args.workers} workers on "
        f"one connection each), {args.seconds} s per phase; every download's bytes checked "
        f"(BLAKE3 of whole files, byte compare of ranges). Files of {sizes}. Baseline: "
        "nginx serving the same files at the same URL paths to the same client and download mix.",
        "- 1-minute load average at start / end: "
        + " / ".join(f"{x:.2f}" for x in res.load)
        + " (2 cores shared by the client, the servers and anything else running).",
        "",
        "| download mix | ops/s | MB/s | p50 / p99 ms (whole file) | errors | client cores "
        "| node cores |",
        "|---|---|---|---|---|---|---|",
        *_download_rows(res),
        "",
        f"Mixed load on the node ({args.workers} workers, after a {WARMUP_SECONDS:g} s warm-up):",
        "",
        *table(m.report),
        "",
        *_process_lines(res),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="modelyard-load-bench-", dir=args.work_dir))
    res = Results(args=args, load=[os.getloadavg()[0]])
    try:
        if missing_tools(["nginx"]):
            raise MissingToolError("missing nginx: apt-get install -y nginx")
        measure(args, root, "myd_bench_" + secrets.token_urlsafe(24), res)
    except MissingToolError as exc:
        print(f"load.py: {exc}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    except (BenchError, RuntimeError, httpx.HTTPError) as exc:
        print(f"load.py: FAILED: {exc}", file=sys.stderr)
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
