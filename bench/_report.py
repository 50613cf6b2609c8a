"""What bench/transfer.py measured, rendered as one dated Markdown section of bench/RESULTS.md.

A goal given as a ratio is judged on the median ratio, since single runs here are noisy.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _clients import Rate, Transfer
from _procs import peak_rss_bytes

RESULTS = Path(__file__).with_name("RESULTS.md")
REPO_ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
MB = 1e6
MIB = 1 << 20
DOWNLOAD_GOAL = 0.85
INGEST_GOAL = 0.9
RATE_GOAL = 5000.0
P99_GOAL_MS = 15.0
RSS_GOAL = 300 * MB
RSS_GOAL_SIZE = 2048 * MIB

HEADER = """\
# Benchmark results

Benchmarks, not tests: each measures a baseline in the same run, prints absolute figures and
ratios, and appends a dated section below. Machine: 2 cores, loopback (127.0.0.1) only;
absolute figures drift 20-25 % between runs on these shared VMs (writes into fresh page cache
are especially noisy, nginx's own PUT included), so compare the ratios of one run, over
several runs. A goal given as a ratio is judged on the median ratio.

- `.venv/bin/python bench/transfer.py [--size-mib 1024] [--rps-seconds 10] [--reps 3]`
  (`--no-record` to skip this file). Needs Debian's nginx (its WebDAV module), wrk and curl,
  and hey, because Debian's wrk 4.1.0 cannot parse a HEAD answer that carries a
  Content-Length: `apt-get install -y nginx wrk curl hey` (exit status 2 when missing).
  In one run, against its own nginx (`sendfile off; output_buffers 2 1m;`, one worker,
  WebDAV PUT) and its own `modelyard serve`, both stopped by PID at the end:
  - ingest: `curl -T` of a random file to `PUT /v1/blobs/{blake3}` (fresh data dir each time)
    vs nginx's WebDAV PUT, `--reps` times each, alternating which goes first;
  - download from page cache: `GET /v1/blobs/{blake3}` and the HF route
    `/{repo}/resolve/{commit}/{file}` (after an upload through `huggingface_hub`) vs nginx GET;
  - the node's peak RSS (VmHWM) per phase;
  - `wrk -t2 -c64` on `GET /api/models/{repo}/revision/{commit}` and `HEAD .../resolve/...`
    vs nginx serving a small static file.

  Goals: download >= 0.85x nginx; ingest (BLAKE3 + SHA-256 + fsync) >= 0.9x nginx's PUT (which
  hashes nothing and does not fsync); peak RSS < 300 MB moving a 2 GiB file (`--size-mib 2048`);
  model_info and resolve HEAD for a commit >= 5 000 req/s with p99 <= 15 ms on one process.
- `bench/ingest.py [--size-mib 1024] [--reps 3]`: `PUT /v1/blobs` (curl -T, a fresh node per
  rep) against BLAKE3 + SHA-256 of the same bytes in the bench process (two threads, and one),
  and the first GET right after the upload against nginx's first GET after its own WebDAV PUT.
  Goals: ingest >= 0.8x hashing on two threads; first GET >= 0.8x nginx.
- `bench/sync_lag.py [--commits 100] [--catchup 2000] [--blob-mib 256]`: commit-to-visible lag
  on a replica (long-poll on) and a new replica's catch-up rate. Goals: p50 < 0.5 s, p99 < 2 s.
"""


@dataclass
class Results:
    size: int
    reps: int
    rps_seconds: int
    ingest: dict[str, list[Transfer]] = field(default_factory=lambda: {"node": [], "nginx": []})
    download: dict[str, list[Transfer]] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    client_ceiling: Transfer | None = None
    hf_upload_seconds: float = 0.0
    node_version: str = ""
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end

    def sample_rss(self, phase: str, pid: int) -> None:
        """VmHWM only grows, so the last sample of a process is its peak so far."""
        self.rss[phase] = max(self.rss.get(phase, -1), peak_rss_bytes(pid))


def _best_median(runs: list[Transfer]) -> tuple[float, float]:
    rates = [run.rate for run in runs]
    return max(rates), statistics.median(rates)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _transfer_row(label: str, node: list[Transfer], nginx: list[Transfer], goal: float) -> str:
    node_best, node_median = _best_median(node)
    ngx_best, ngx_median = _best_median(nginx)
    ratio_best, ratio_median = node_best / ngx_best, node_median / ngx_median
    return (
        f"| {label} | {node_best / GB:.2f} / {node_median / GB:.2f} GB/s | "
        f"{ngx_best / GB:.2f} / {ngx_median / GB:.2f} GB/s | "
        f"{ratio_best:.2f}x, {ratio_median:.2f}x | >= {goal}x | {_met(ratio_median >= goal)} |"
    )


def _rate(rate: Rate) -> str:
    errors = f", **{rate.errors} errors**" if rate.errors else ""
    return f"{rate.per_second:,.0f} req/s, p99 {rate.p99_ms:.1f} ms ({rate.tool}{errors})"


def _rate_row(label: str, node: Rate, nginx: Rate, baseline: str) -> str:
    ok = node.per_second >= RATE_GOAL and node.p99_ms <= P99_GOAL_MS and node.errors == 0
    return (
        f"| {label} | {_rate(node)} | {_rate(nginx)}, {baseline} | "
        f"{node.per_second / nginx.per_second:.2f}x | >= {RATE_GOAL:,.0f} req/s, "
        f"p99 <= {P99_GOAL_MS:.0f} ms | {_met(ok)} |"
    )


def _rss_row(res: Results) -> str:
    moving = [res.rss[p] for p in ("ingest", "hf upload", "download") if p in res.rss]
    peak = max(moving, default=-1)
    phases = ", ".join(f"{phase} {value / MB:.0f}" for phase, value in res.rss.items())
    applies = res.size >= RSS_GOAL_SIZE
    met = _met(peak < RSS_GOAL) if applies else "n/a (needs `--size-mib 2048`)"
    return (
        f"| node peak RSS (VmHWM) moving the {res.size // MIB} MiB file | {peak / MB:.0f} MB "
        f"(per phase, MB: {phases}) | | | < {RSS_GOAL / MB:.0f} MB moving 2 GiB | {met} |"
    )


def gbps(rates: list[float]) -> str:
    """Best / median of rates in bytes/s, as GB/s."""
    return f"{max(rates) / 1e9:.2f} / {statistics.median(rates) / 1e9:.2f} GB/s"


def ratio(ours: list[float], base: list[float]) -> tuple[str, float]:
    """ "best, median" of ours against a baseline of the same run, and the median ratio."""
    median = statistics.median(ours) / statistics.median(base)
    return f"{max(ours) / max(base):.2f}x, {median:.2f}x", median


def git_version() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "registry", "sync")
    return git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else "")


def _nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    return out.stderr.strip().rpartition("/")[2]


def _notes(res: Results) -> list[str]:
    notes = [
        f"- node {res.node_version} at git {git_version()}; nginx {_nginx_version()}; "
        f"client curl for transfers, wrk/hey -c64 for {res.rps_seconds} s for rates.",
        "- 1-minute load average at start / end: "
        + " / ".join(f"{load:.2f}" for load in res.load)
        + " (2 cores: anything else running skews the figures).",
    ]
    if res.client_ceiling is not None:
        notes.append(
            "- client ceiling, `curl -T` into nginx discarding the body: "
            f"{res.client_ceiling.rate / GB:.2f} GB/s (curl is not what limits ingest)."
        )
    if res.hf_upload_seconds > 0:
        notes.append(
            "- `huggingface_hub` `upload_file` (hashes SHA-256, preupload, LFS PUT, commit): "
            f"{res.hf_upload_seconds:.1f} s, {res.size / res.hf_upload_seconds / GB:.2f} GB/s."
        )
    return notes


def render(res: Results, argline: str) -> str:
    title = (
        f"## Transfer ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`bench/transfer.py{' ' + argline if argline else ''}`, {res.size // MIB} MiB file, "
        f"{res.reps} reps, best / median)"
    )
    ngx_get = res.download["nginx"]
    lines = [
        "",
        title,
        "",
        *_notes(res),
        "",
        "| measure | node | nginx | node/nginx (best, median) | goal | met |",
        "|---|---|---|---|---|---|",
        _transfer_row(
            "ingest PUT (node: BLAKE3 + SHA-256 + fsync; nginx: WebDAV)",
            res.ingest["node"],
            res.ingest["nginx"],
            INGEST_GOAL,
        ),
        _transfer_row(
            "download `/v1/blobs` (page cache)",
            res.download["node /v1/blobs"],
            ngx_get,
            DOWNLOAD_GOAL,
        ),
        _transfer_row(
            "download HF `/resolve` (page cache)",
            res.download["node /resolve"],
            ngx_get,
            DOWNLOAD_GOAL,
        ),
        _rate_row(
            "model_info by commit (GET)",
            res.rates["model_info"],
            res.rates["nginx GET"],
            "GET small file",
        ),
        _rate_row(
            "resolve HEAD by commit",
            res.rates["resolve HEAD"],
            res.rates["nginx HEAD"],
            "HEAD small file",
        ),
        _rss_row(res),
        "",
    ]
    return "\n".join(lines)


def append_results(section: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as out:
        out.write(section)
