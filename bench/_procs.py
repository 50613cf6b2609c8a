"""Processes a benchmark starts: nginx, moto's S3 server and modelyard nodes, on 127.0.0.1
only; and the CPU time they (and the machine) spend.

Each is a context manager that polls for readiness against a deadline and, whatever happens,
stops its process by PID (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
NGINX_SMALL_FILE = "small.txt"

# sendfile is slower than large writes on this VM (design.md §9), hence `sendfile off` with two
# 1 MiB output buffers. One worker, like the node's one process. The PUT location is WebDAV
# (built into Debian's nginx); `/discard` reads and drops a body, to measure the client alone.
# client_body_buffer_size made no measurable difference to PUT here (16k to 4m), so stays default.
_NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile off;
  output_buffers 2 1m;
  keepalive_requests 1000000;
  client_body_temp_path {root}/body_temp;
  proxy_temp_path {root}/proxy_temp;
  fastcgi_temp_path {root}/fastcgi_temp;
  uwsgi_temp_path {root}/uwsgi_temp;
  scgi_temp_path {root}/scgi_temp;
  default_type application/octet-stream;
  server {{
    listen {host}:{port};
    root {root}/www;
    client_max_body_size 0;
    location / {{
      dav_methods PUT DELETE;
      create_full_put_path on;
    }}
    location = /discard {{ return 204; }}
  }}
}}
"""


@dataclass
class Server:
    """A started process and the base URL it answers on."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def peak_rss_bytes(pid: int) -> int:
    """The process's resident-set high-water mark (VmHWM), or -1 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far, or 0.0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores have spent running something since boot (user, nice, system, irq,
    softirq; not idle, iowait, or steal, the time the hypervisor ran someone else)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def stop(server: Server, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the process by its PID: SIGTERM, and SIGKILL if it outlives the timeout."""
    if server.proc.poll() is not None:
        return
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(timeout=timeout)


def wait_ready(server: Server, check: Callable[[httpx.Client], bool], timeout: float) -> None:
    """Poll `check` until it holds; fail early if the process exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            try:
                if check(client):
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f}s:\n{server.log_tail()}")


@contextmanager
def running(server: Server, check: Callable[[httpx.Client], bool]) -> Iterator[Server]:
    """Yield `server` once ready; stop it by PID on the way out, however that happens."""
    try:
        wait_ready(server, check, READY_TIMEOUT)
        yield server
    finally:
        stop(server)


def write_nginx_conf(root: Path, port: int) -> Path:
    for sub in ("www", "body_temp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "www" / NGINX_SMALL_FILE).write_text("ok\n")
    # As root, nginx's workers would switch to `nobody` and could not write into the temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, root=root, host=HOST, port=port))
    return conf


@contextmanager
def nginx(root: Path) -> Iterator[Server]:
    """nginx in the foreground (`daemon off`), with every path it writes under `root`."""
    port = free_port()
    conf = write_nginx_conf(root, port)
    log = root / "error.log"
    command = ["nginx", "-c", str(conf), "-p", str(root), "-e", str(log)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("nginx", proc, f"http://{HOST}:{port}", log)
    with running(server, lambda c: c.get(f"/{NGINX_SMALL_FILE}").status_code == 200) as ready:
        yield ready


@contextmanager
def sink(root: Path) -> Iterator[Server]:
    """uvicorn serving bench/_sink_app.py (receive a body, drop it) on a free port."""
    port = free_port()
    log = root / "sink.log"
    command = [sys.executable, "-m", "uvicorn", "_sink_app:app", "--host", HOST]
    command += ["--port", str(port), "--log-level", "warning", "--app-dir", str(BENCH)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = Server("sink", proc, f"http://{HOST}:{port}", log)
    with running(server, lambda c: c.get("/").status_code == 200) as ready:
        yield ready


def _beside_python(name: str) -> str:
    """A console script of this interpreter's environment (the project's venv), else PATH's."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or str(beside))


def moto_executable() -> str:
    """moto's `moto_server` console script (moto[server], in the dev extra)."""
    return _beside_python("moto_server")


@contextmanager
def moto_s3(root: Path) -> Iterator[Server]:
    """moto's S3 server (`moto_server`, from moto[server]) as its own process, so that serving
    S3 does not share the benchmark's GIL; its state lives in that process only."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "moto.log"
    with log.open("ab") as out:
        command = [moto_executable(), "-H", HOST, "-p", str(port)]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = Server("moto_server", proc, f"http://{HOST}:{port}", log)
    with running(server, lambda c: c.get("/").status_code == 200) as ready:
        yield ready


def _node_healthy(client: httpx.Client) -> bool:
    response = client.get("/v1/health")
    if response.status_code != 200:
        return False
    body = response.json()
    return isinstance(body, dict) and {"node_id", "version", "serial"} <= body.keys()


def modelyard_executable() -> str:
    """The `modelyard` console script next to this interpreter (the project's venv)."""
    return _beside_python("modelyard")


@contextmanager
def node(
    data_dir: Path, admin_token: str, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """`modelyard serve` as its own process on `data_dir`, logging to `log`; `env` adds
    MODELYARD_* settings (and anything else the node should see, such as AWS_*)."""
    port = free_port()
    # The caller's own MODELYARD_* settings would make runs differ; only the token goes in.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    environ |= {**(env or {}), "MODELYARD_ADMIN_TOKEN": admin_token}
    command = [modelyard_executable(), "serve", "--host", HOST, "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"node {data_dir.name}", proc, f"http://{HOST}:{port}", log)
    with running(server, _node_healthy) as ready:
        yield ready
