"""One modelyard node against nginx on this machine: bulk ingest and download, peak RSS, and
small-request rates, all measured in one run on 127.0.0.1.

Run: `.venv/bin/python bench/transfer.py [--size-mib 1024] [--rps-seconds 10] [--reps 3]`.
Needs Debian's nginx, wrk and curl (and hey where wrk cannot do HEAD); prints a table and
appends it to bench/RESULTS.md, whose header says what the goals are.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import _procs
import blake3
import httpx
from _clients import (
    BenchError,
    Rate,
    Transfer,
    curl_get,
    curl_put,
    hey_head,
    missing_tools,
    nginx_has_dav,
    wrk,
    wrk_parses_head,
)
from _report import Results, append_results, render

if TYPE_CHECKING:  # imported for real late: HF_HUB_* must be set first
    from huggingface_hub.errors import HfHubHTTPError

REQUIRED_TOOLS = ("nginx", "wrk", "curl")
INSTALL_HINT = "apt-get install -y nginx wrk curl hey"
CHUNK = 4 << 20
MIB = 1 << 20
REPO = "admin/bench"
FILENAME = "big.safetensors"
EXIT_MISSING_TOOL = 2


class MissingToolError(BenchError):
    """A tool this run needs is not installed."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="bulk file size (1024)")
    parser.add_argument("--rps-seconds", type=int, default=10, help="each wrk run (10)")
    parser.add_argument("--reps", type=int, default=3, help="timed transfers per measure (3)")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    for name, low, high in (("size_mib", 1, 16384), ("rps_seconds", 1, 120), ("reps", 1, 10)):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be within {low}..{high}")
    return args


def check_tools() -> None:
    missing = missing_tools(REQUIRED_TOOLS)
    if missing:
        raise MissingToolError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
    if not nginx_has_dav():
        raise MissingToolError("this nginx lacks the WebDAV module (Debian's `nginx` has it)")


def write_random(path: Path, mib: int) -> None:
    """Random bytes, streamed in 4 MiB pieces (never the whole file in memory)."""
    remaining = mib * MIB
    with path.open("wb") as out:
        while remaining > 0:
            piece = min(CHUNK, remaining)
            out.write(os.urandom(piece))
            remaining -= piece


def blake3_hex(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    return str(hasher.hexdigest())


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def put_nginx(nginx: _procs.Server, www: Path, data: Path) -> Transfer:
    # A new file every time (201), as the node gets a new data dir.
    (www / FILENAME).unlink(missing_ok=True)
    return curl_put(f"{nginx.url}/{FILENAME}", data, {}, expect=201)


def put_node(root: Path, rep: int, data: Path, digest: str, token: str, res: Results) -> Transfer:
    data_dir = root / f"ingest-{rep}"
    try:
        with _procs.node(data_dir, token, root / "node-ingest.log") as node:
            url = f"{node.url}/v1/blobs/{digest}"
            transfer = curl_put(url, data, bearer(token), expect=201)
            res.sample_rss("ingest", node.pid)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return transfer


def measure_ingest(
    root: Path, nginx: _procs.Server, data: Path, digest: str, token: str, res: Results
) -> None:
    """PUT the file `reps` times to each side, alternating which goes first: writes into fresh
    page cache are slow and noisy on this VM, and neither side should always get the best slot.
    """
    www = root / "nginx" / "www"
    for rep in range(res.reps):
        for side in ("nginx", "node") if rep % 2 == 0 else ("node", "nginx"):
            if side == "nginx":
                transfer = put_nginx(nginx, www, data)
            else:
                transfer = put_node(root, rep, data, digest, token, res)
            res.ingest[side].append(transfer)
        print(f"  ingest rep {rep + 1}: " + ", ".join(_last_rates(res.ingest)), flush=True)
    res.client_ceiling = curl_put(f"{nginx.url}/discard", data, {}, expect=204)


def _last_rates(runs: dict[str, list[Transfer]]) -> list[str]:
    return [f"{name} {values[-1].rate / 1e9:.2f} GB/s" for name, values in runs.items()]


def hf_upload(node_url: str, token: str, data: Path) -> tuple[str, float]:
    """Create the repo and upload the file through the real huggingface_hub client."""
    from huggingface_hub import HfApi  # imported late: HF_HUB_* must be set first
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=node_url, token=token)
    try:
        api.create_repo(REPO)
        start = time.perf_counter()
        info = api.upload_file(path_or_fileobj=str(data), path_in_repo=FILENAME, repo_id=REPO)
    except HfHubHTTPError as exc:
        raise hub_error(node_url, exc) from exc
    return str(info.oid), time.perf_counter() - start


def hub_error(node_url: str, exc: HfHubHTTPError) -> BenchError:
    """What huggingface_hub's failed request asked and what the node answered."""
    response = exc.response
    return BenchError(
        f"huggingface_hub against {node_url}: {exc}\n"
        f"{response.request.method} {response.request.url} -> HTTP {response.status_code}: "
        f"{response.text[:2000]}"
    )


def measure_downloads(urls: dict[str, tuple[str, dict[str, str]]], res: Results) -> None:
    """One untimed GET per URL brings the file into page cache; then `reps` rounds."""
    for url, headers in urls.values():
        curl_get(url, headers, res.size)
    for rep in range(res.reps):
        for name, (url, headers) in urls.items():
            res.download.setdefault(name, []).append(curl_get(url, headers, res.size))
        print(f"  download rep {rep + 1}: " + ", ".join(_last_rates(res.download)), flush=True)


def expect_status(method: str, url: str, status: int = 200) -> None:
    """One request before a wrk run: a route that fails should fail loudly, not as a rate."""
    response = httpx.request(method, url, timeout=30)
    if response.status_code != status:
        raise BenchError(f"{method} {url} -> HTTP {response.status_code}: {response.text[:2000]}")


def measure_rates(
    node_url: str, nginx_url: str, sha: str, seconds: int, root: Path, res: Results
) -> None:
    info_url = f"{node_url}/api/models/{REPO}/revision/{sha}"
    head_url = f"{node_url}/{REPO}/resolve/{sha}/{FILENAME}"
    small_url = f"{nginx_url}/{_procs.NGINX_SMALL_FILE}"
    expect_status("GET", info_url)
    expect_status("HEAD", head_url)
    head: Callable[[str], Rate]
    if wrk_parses_head(small_url, root):
        head = lambda url: wrk(url, seconds, head=True, script_dir=root)  # noqa: E731
    elif shutil.which("hey"):
        head = lambda url: hey_head(url, seconds)  # noqa: E731
    else:
        raise MissingToolError(f"this wrk cannot measure HEAD and hey is missing: {INSTALL_HINT}")
    res.rates["model_info"] = wrk(info_url, seconds)
    res.rates["nginx GET"] = wrk(small_url, seconds)
    res.rates["resolve HEAD"] = head(head_url)
    res.rates["nginx HEAD"] = head(small_url)


def node_version(node_url: str) -> str:
    health = httpx.get(f"{node_url}/v1/health", timeout=10).json()
    return f"{health.get('version')} (node {health.get('node_id')})"


def run(args: argparse.Namespace, root: Path, token: str) -> Results:
    res = Results(size=args.size_mib * MIB, reps=args.reps, rps_seconds=args.rps_seconds)
    res.load.append(os.getloadavg()[0])
    data = root / FILENAME
    print(f"writing {args.size_mib} MiB of random bytes to {data}", flush=True)
    write_random(data, args.size_mib)
    digest = blake3_hex(data)
    with _procs.nginx(root / "nginx") as nginx:
        print(f"nginx pid {nginx.pid} on {nginx.url}; ingest, {args.reps} reps", flush=True)
        measure_ingest(root, nginx, data, digest, token, res)
        with _procs.node(root / "node", token, root / "node.log") as node:
            res.node_version = node_version(node.url)
            print(f"node pid {node.pid} on {node.url}; huggingface_hub upload", flush=True)
            sha, res.hf_upload_seconds = hf_upload(node.url, token, data)
            res.sample_rss("hf upload", node.pid)
            measure_downloads(
                {
                    "nginx": (f"{nginx.url}/{FILENAME}", {}),
                    "node /v1/blobs": (f"{node.url}/v1/blobs/{digest}", bearer(token)),
                    "node /resolve": (f"{node.url}/{REPO}/resolve/{sha}/{FILENAME}", {}),
                },
                res,
            )
            res.sample_rss("download", node.pid)
            print(f"small requests, {args.rps_seconds} s each", flush=True)
            measure_rates(node.url, nginx.url, sha, args.rps_seconds, root, res)
            res.sample_rss("small requests", node.pid)
    res.load.append(os.getloadavg()[0])
    return res


def set_hf_env(root: Path) -> None:
    # huggingface_hub reads these at import; Xet would bypass the node's LFS endpoints.
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HOME"] = str(root / "hf-home")


def print_logs(root: Path, chars: int = 4000) -> None:
    """The nodes' logs die with the temp dir; show their ends (tracebacks) before that."""
    for log in sorted(root.glob("node*.log")):
        print(f"--- end of {log.name} ---", file=sys.stderr)
        print(log.read_text(errors="replace")[-chars:], file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-", dir=args.work_dir))
    try:
        check_tools()
        set_hf_env(root)
        res = run(args, root, token="myd_bench_" + secrets.token_urlsafe(24))
    except MissingToolError as exc:
        print(f"transfer.py: {exc}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    except BenchError as exc:
        print(f"transfer.py: FAILED: {exc}", file=sys.stderr)
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
