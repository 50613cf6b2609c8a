"""Upload and download throughput through a node versus nginx, peak RSS, small-request rate.

Run: `.venv/bin/python bench/transfer.py [--size-mib 1024] [--rss-size-mib 2048] [--seconds 10]`
Needs Debian's nginx, wrk, hey and curl (`.ci/run` does not run benchmarks; install them with
`apt-get install -y nginx wrk hey curl`). Everything runs on 127.0.0.1; every process started
here is stopped by its PID. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import blake3
import httpx

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huggingface_hub import HfApi

from tests.e2e.cluster import TOKEN, NodeProcess, free_port, wait_until

RESULTS = Path(__file__).with_name("RESULTS.md")
NGINX_CONF = """daemon off; {user} pid {root}/nginx.pid; error_log {root}/error.log;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile off; output_buffers 2 1m; keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port}; root {root}/www;
    client_max_body_size 0; client_body_temp_path {root}/body;
    location / {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
"""


def write_random(path: Path, mib: int) -> str:
    hasher = blake3.blake3()
    with path.open("wb") as f:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            hasher.update(chunk)
            f.write(chunk)
    return str(hasher.hexdigest())


def curl(*args: str) -> tuple[float, str]:
    """Run curl; return (bytes per second, HTTP status) as curl measured them."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{speed_upload} %{speed_download} %{http_code}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    up, down, status = out.split()
    return max(float(up), float(down)), status


def start_nginx(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    for sub in ("www", "body"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, root=root, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)])
    url = f"http://127.0.0.1:{port}"
    (root / "www" / "small.txt").write_text("ok")
    wait_until(lambda: httpx.get(f"{url}/small.txt").status_code == 200, 10)
    return proc, url


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def node_pid(node: NodeProcess) -> int:
    assert node._proc is not None
    return node._proc.pid


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(8 << 20):
            pass


def stats(values: list[float]) -> tuple[float, float]:
    return max(values), statistics.median(values)


def ingest(root: Path, data: Path, digest: str, nginx: str, reps: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"node": [], "nginx": []}
    for rep in range(reps):
        speed, status = curl("-T", str(data), f"{nginx}/put-{rep}.bin")
        assert status == "201", status
        results["nginx"].append(speed)
        node = NodeProcess(root, f"ingest{rep}").start()
        try:
            speed, status = curl(
                "-T",
                str(data),
                "-H",
                f"authorization: Bearer {TOKEN}",
                f"{node.url}/v1/blobs/{digest}",
            )
            assert status == "201", status
            results["node"].append(speed)
        finally:
            node.stop()
            shutil.rmtree(node.data_dir)
    return results


def download(urls: dict[str, str], reps: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(reps):
        for name, url in urls.items():
            auth = ["-H", f"authorization: Bearer {TOKEN}"] if "/v1/" in url else []
            speed, status = curl(*auth, url)
            assert status == "200", (name, status)
            results[name].append(speed)
    return results


def wrk(url: str, seconds: int) -> tuple[float, str]:
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return rate, p99


def hey_head(url: str, seconds: int) -> tuple[float, str]:
    """wrk cannot parse HEAD responses that carry a Content-Length; hey (Go) can."""
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", "64", "-m", "HEAD", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99% in ([\d.]+) secs", out).group(1)  # type: ignore[union-attr]
    return rate, f"{float(p99) * 1000:.2f}ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rss-size-mib", type=int, default=2048)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "hey", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y nginx wrk hey curl")
    work = Path(__file__).parent / ".work"
    work.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        root = Path(tmp)
        data = root / "model.safetensors"
        digest = write_random(data, args.size_mib)
        ngx, ngx_url = start_nginx(root / "nginx")
        node = None
        try:
            put = ingest(root, data, digest, ngx_url, args.reps)
            node = NodeProcess(root, "node").start()
            api = HfApi(endpoint=node.url, token=TOKEN)
            api.create_repo("admin/bench")
            sha = api.upload_file(
                path_or_fileobj=str(data), path_in_repo="model.safetensors", repo_id="admin/bench"
            ).oid
            shutil.copy(data, root / "nginx" / "www" / "model.safetensors")
            blob = next((node.data_dir / "store" / "blobs").rglob(digest))
            warm(blob)
            warm(root / "nginx" / "www" / "model.safetensors")
            get = download(
                {
                    "nginx": f"{ngx_url}/model.safetensors",
                    "node /v1/blobs": f"{node.url}/v1/blobs/{digest}",
                    "node /resolve": f"{node.url}/admin/bench/resolve/{sha}/model.safetensors",
                },
                args.reps,
            )
            info = wrk(f"{node.url}/api/models/admin/bench/revision/{sha}", args.seconds)
            head = hey_head(f"{node.url}/admin/bench/resolve/{sha}/model.safetensors", args.seconds)
            static = wrk(f"{ngx_url}/small.txt", args.seconds)
            node.stop()
            node = NodeProcess(root, "rss").start()  # a fresh process moves a big file
            big = root / "big.bin"
            big_digest = write_random(big, args.rss_size_mib)
            curl(
                "-T",
                str(big),
                "-H",
                f"authorization: Bearer {TOKEN}",
                f"{node.url}/v1/blobs/{big_digest}",
            )
            curl(
                "-o",
                "/dev/null",
                "-H",
                f"authorization: Bearer {TOKEN}",
                f"{node.url}/v1/blobs/{big_digest}",
            )
            rss = peak_rss_mib(node_pid(node))
        finally:
            if node is not None:
                node.stop()
            ngx.terminate()
            ngx.wait(timeout=10)
    report(args, put, get, info, head, static, rss)


def report(
    args: argparse.Namespace,
    put: dict[str, list[float]],
    get: dict[str, list[float]],
    info: tuple[float, str],
    head: tuple[float, str],
    static: tuple[float, str],
    rss: float,
) -> None:
    gb = 1e9
    put_best, put_med = stats(put["node"])
    ngx_put_best, ngx_put_med = stats(put["nginx"])
    ngx_get_best, ngx_get_med = stats(get["nginx"])
    lines = [
        f"\n## Transfer ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `bench/transfer.py`, "
        f"{args.size_mib} MiB file, {args.reps} runs, best / median)\n",
        "| measure | node | nginx | ratio (best, median) | goal |",
        "|---|---|---|---|---|",
        f"| ingest (PUT; node hashes BLAKE3 + SHA-256 and fsyncs) | {put_best / gb:.2f} / "
        f"{put_med / gb:.2f} GB/s | {ngx_put_best / gb:.2f} / {ngx_put_med / gb:.2f} GB/s | "
        f"{put_best / ngx_put_best:.2f}x, {put_med / ngx_put_med:.2f}x | >= 0.9x |",
    ]
    for name in ("node /v1/blobs", "node /resolve"):
        best, med = stats(get[name])
        lines.append(
            f"| download {name} (page cache) | {best / gb:.2f} / {med / gb:.2f} GB/s | "
            f"{ngx_get_best / gb:.2f} / {ngx_get_med / gb:.2f} GB/s | "
            f"{best / ngx_get_best:.2f}x, {med / ngx_get_med:.2f}x | >= 0.85x |"
        )
    lines += [
        f"| model_info by commit (wrk -t2 -c64) | {info[0]:.0f} req/s, p99 {info[1]} | "
        f"{static[0]:.0f} req/s, p99 {static[1]} (static file) | "
        f"{info[0] / static[0]:.2f}x | >= 5000 req/s, p99 <= 15 ms |",
        f"| resolve HEAD by commit (hey -c64) | {head[0]:.0f} req/s, p99 {head[1]} | | | "
        ">= 5000 req/s, p99 <= 15 ms |",
        f"| node peak RSS, PUT + GET of a {args.rss_size_mib} MiB file | {rss:.0f} MiB | | | "
        "< 300 MB |",
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    main()
