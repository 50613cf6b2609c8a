"""The HTTP clients the benchmarks drive, and what they report: curl for bulk transfers, wrk
(and hey where Debian's wrk cannot go) for small-request rates.

The same client runs against the node and against nginx, so a ratio compares servers only.
"""

from __future__ import annotations

import csv
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

CURL_TIMEOUT = 900  # seconds for one transfer, far above 2 GiB at 10 MB/s
WRK_CONNECTIONS = 64
WRK_THREADS = 2
_HEAD_LUA = 'wrk.method = "HEAD"\n'
# wrk's setup() runs once per thread before any request: thread i connects to ports[i % n], so
# one wrk spreads its connections evenly over several processes and merges their latencies.
_SPREAD_LUA = """\
local ports, n = {{{ports}}}, 0
function setup(thread)
  thread.addr = wrk.lookup("{host}", tostring(ports[n % #ports + 1]))[1]
  n = n + 1
end
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_HeyRun = tuple[list[str], subprocess.Popen[bytes], Path, Path]  # command, process, CSV, stderr


class BenchError(RuntimeError):
    """A measurement could not be taken; the message says what was run and what came back."""


@dataclass(frozen=True)
class Transfer:
    """One curl transfer as curl timed it (from request start to the last response byte)."""

    status: int
    seconds: float
    nbytes: int

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.nbytes / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Rate:
    """A fixed-duration small-request run."""

    tool: str
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus answers outside 2xx/3xx


def missing_tools(names: Sequence[str]) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def nginx_has_dav() -> bool:
    # `nginx -V` prints its configure arguments on stderr.
    out = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10, check=False)
    return "--with-http_dav_module" in out.stderr + out.stdout


def _redacted(command: Sequence[str]) -> str:
    """The command as a shell line, with any bearer token masked."""
    return shlex.join(
        "authorization: Bearer ***" if arg.lower().startswith("authorization:") else arg
        for arg in command
    )


def _curl(args: list[str], body_to: Path) -> tuple[Transfer, list[str]]:
    # `Expect:` off: curl would otherwise wait for `100 Continue` before each large PUT.
    command = ["curl", "-sS", "-H", "Expect:", "-o", str(body_to), "--max-time", str(CURL_TIMEOUT)]
    command += ["-w", "%{http_code} %{time_total} %{size_upload} %{size_download}", *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=CURL_TIMEOUT + 30)
    if out.returncode != 0:
        raise BenchError(f"`{_redacted(command)}` exited {out.returncode}: {out.stderr.strip()}")
    status, seconds, up, down = out.stdout.split()
    nbytes = max(int(float(up)), int(float(down)))
    return Transfer(int(status), float(seconds), nbytes), command


def _auth(headers: Mapping[str, str]) -> list[str]:
    return [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]


def curl_put(url: str, path: Path, headers: Mapping[str, str], expect: int) -> Transfer:
    """PUT the file's bytes (curl -T streams it, with Content-Length) and check the status."""
    with tempfile.NamedTemporaryFile(prefix="curl-body-") as body:
        transfer, command = _curl([*_auth(headers), "-T", str(path), url], Path(body.name))
        if transfer.status != expect or transfer.nbytes != path.stat().st_size:
            answer = Path(body.name).read_text(errors="replace")[:2000]
            raise BenchError(
                f"`{_redacted(command)}` -> HTTP {transfer.status} after {transfer.nbytes} bytes "
                f"sent (expected {expect}): {answer}"
            )
    return transfer


def curl_get(
    url: str, headers: Mapping[str, str], size: int, to: Path = Path("/dev/null")
) -> Transfer:
    """GET into `to` (/dev/null by default; following redirects); check status and length."""
    transfer, command = _curl([*_auth(headers), "-L", url], to)
    if transfer.status != 200 or transfer.nbytes != size:
        answer = _first_bytes(url, headers)
        raise BenchError(
            f"`{_redacted(command)}` -> HTTP {transfer.status}, {transfer.nbytes} bytes "
            f"(expected 200, {size} bytes): {answer}"
        )
    return transfer


def _first_bytes(url: str, headers: Mapping[str, str]) -> str:
    """What a failing URL answers, for the report (the body curl threw away)."""
    try:
        with httpx.stream("GET", url, headers=dict(headers), timeout=30) as response:
            head = next(response.iter_bytes(2000), b"")
            return f"HTTP {response.status_code} {head.decode(errors='replace')}"
    except httpx.HTTPError as exc:
        return f"({type(exc).__name__}: {exc})"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def _search(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"no {what} in the output:\n{text}")
    return match


def parse_wrk(text: str) -> Rate:
    p50 = _search(r"\n\s+50%\s+([\d.]+)(us|ms|s)\b", text, "median")
    p99 = _search(r"\n\s+99%\s+([\d.]+)(us|ms|s)\b", text, "99th percentile")
    socket = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Rate(
        tool="wrk",
        requests=int(_search(r"(\d+) requests in", text, "request count").group(1)),
        per_second=float(_search(r"Requests/sec:\s+([\d.]+)", text, "rate").group(1)),
        p50_ms=_ms(p50.group(1), p50.group(2)),
        p99_ms=_ms(p99.group(1), p99.group(2)),
        errors=errors,
    )


def parse_hey(text: str) -> Rate:
    statuses = [(int(code), int(n)) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) resp", text)]
    _, _, error_section = text.partition("Error distribution:")
    failed = re.findall(r"^\s+\[(\d+)\]", error_section, re.MULTILINE)
    return Rate(
        tool="hey",
        requests=sum(n for _, n in statuses),
        per_second=float(_search(r"Requests/sec:\s+([\d.]+)", text, "rate").group(1)),
        p50_ms=float(_search(r"50% in ([\d.]+) secs", text, "median").group(1)) * 1000,
        p99_ms=float(_search(r"99% in ([\d.]+) secs", text, "99th percentile").group(1)) * 1000,
        errors=sum(n for code, n in statuses if code >= 400) + sum(int(n) for n in failed),
    )


def _run(command: list[str], timeout: float) -> str:
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise BenchError(f"`{shlex.join(command)}` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def wrk(
    url: str,
    seconds: int,
    *,
    head: bool = False,
    script_dir: Path | None = None,
    ports: Sequence[int] = (),
    timeout: int | None = None,
) -> Rate:
    """`wrk -t2 -c64 -d<seconds>s --latency`; HEAD goes through a one-line Lua script. With
    `ports`, wrk's threads connect to those ports of the URL's host in turn (each port gets
    the same share of threads and connections), as to processes behind a load balancer.
    `timeout` replaces wrk's 2 s, past which a request counts as an error, not a latency."""
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if timeout is not None:
        command.append(f"--timeout={timeout}s")
    script = _HEAD_LUA if head else ""
    if ports:
        if WRK_THREADS % len(ports):
            raise BenchError(f"{WRK_THREADS} wrk threads do not split evenly over {len(ports)}")
        host = httpx.URL(url).host
        script += _SPREAD_LUA.format(ports=", ".join(map(str, ports)), host=host)
    if script:
        lua = (script_dir or Path(tempfile.gettempdir())) / f"wrk-{len(ports)}-{int(head)}.lua"
        lua.write_text(script)
        command += ["-s", str(lua)]
    return parse_wrk(_run([*command, url], seconds + 60))


def hey_head(url: str, seconds: int) -> Rate:
    """HEAD at the same concurrency as wrk, for a wrk that cannot parse HEAD responses."""
    command = ["hey", "-z", f"{seconds}s", "-c", str(WRK_CONNECTIONS), "-m", "HEAD", url]
    return parse_hey(_run(command, seconds + 60))


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def _hey_csv(runs: Sequence[_HeyRun], timeout: float) -> tuple[list[float], float, int]:
    """Wait for each hey; its CSV's latencies (ms, sorted), the elapsed seconds, answers >= 400."""
    latencies: list[float] = []
    elapsed, failed = 0.0, 0
    for command, proc, out, err in runs:
        if proc.wait(timeout=timeout) != 0:
            message = err.read_text(errors="replace").strip()[-2000:]
            raise BenchError(f"`{shlex.join(command)}` exited {proc.returncode}: {message}")
        with out.open(newline="") as rows:
            for row in csv.DictReader(rows):
                latency = float(row["response-time"])
                latencies.append(latency * 1000)
                elapsed = max(elapsed, float(row["offset"]) + latency)
                failed += int(row["status-code"]) >= 400
        out.unlink()
        err.unlink()
    latencies.sort()
    return latencies, elapsed, failed


def hey_head_spread(urls: Sequence[str], seconds: int, work_dir: Path) -> Rate:
    """HEAD at wrk's concurrency and thread count in total, split evenly over `urls`: one hey
    per URL, run together, each with its share of the connections and of the cores (`-cpus`,
    Go's GOMAXPROCS), so one URL or two load the machine alike. Latencies are merged from
    hey's per-request CSV. Transport errors are not in that CSV: they show as fewer requests.
    """
    share = len(urls)
    if WRK_CONNECTIONS % share or WRK_THREADS % share:
        raise BenchError(f"{WRK_CONNECTIONS} connections do not split evenly over {share}")
    runs: list[_HeyRun] = []
    try:
        for i, url in enumerate(urls):
            command = ["hey", "-z", f"{seconds}s", "-c", str(WRK_CONNECTIONS // share)]
            command += ["-cpus", str(WRK_THREADS // share), "-m", "HEAD", "-o", "csv", url]
            out, err = work_dir / f"hey-{i}.csv", work_dir / f"hey-{i}.err"
            with out.open("wb") as sink, err.open("wb") as errors:
                runs.append(
                    (command, subprocess.Popen(command, stdout=sink, stderr=errors), out, err)
                )
        latencies, elapsed, failed = _hey_csv(runs, seconds + 60)
    finally:
        for _, proc, _, _ in runs:  # only after a failure: stop the others by PID
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return Rate(
        tool=f"hey x{share}" if share > 1 else "hey",
        requests=len(latencies),
        per_second=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        errors=failed,
    )


def wrk_parses_head(url: str, script_dir: Path) -> bool:
    """Debian's wrk 4.1.0 waits for a body after a HEAD answer that carries a Content-Length,
    so it completes no request at all; probe that for one second against nginx."""
    return wrk(url, 1, head=True, script_dir=script_dir).requests > 0
