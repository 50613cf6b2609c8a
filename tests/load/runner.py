"""Running a bounded load: a fixed number of asyncio workers on one httpx client (one connection
each), drawing operations from a weighted mix until a deadline or an operation budget.

An error is any operation that raised: an unexpected status or error code, wrong bytes, or a
transport failure (timeouts included). The first few error messages are kept for the report.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from tests.load.fixture import Fixture
from tests.load.ops import OPERATIONS, Context, Done

KEPT_ERRORS = 20
MB = 1e6


@dataclass(frozen=True)
class Plan:
    seconds: float  # no operation starts after this
    workers: int
    mix: Mapping[str, int]  # operation name -> weight
    max_ops: int = 1_000_000
    seed: int = 0
    timeout: float = 60.0  # httpx's connect/read/write/pool timeout for every request
    grace: float = 180.0  # after `seconds`, how long operations under way may still take


@dataclass
class Tally:
    """One kind of operation: how many, how they went, what they moved."""

    ops: int = 0
    requests: int = 0
    errors: int = 0
    down: int = 0
    up: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations

    def percentile(self, fraction: float) -> float:
        """The nearest-rank percentile of the latencies (0.0 when there are none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Report:
    seconds: float = 0.0  # wall time of the whole run
    tallies: dict[str, Tally] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the first KEPT_ERRORS messages

    def tally(self, kind: str) -> Tally:
        return self.tallies.setdefault(kind, Tally())

    def record(self, kind: str, done: Done, seconds: float) -> None:
        tally = self.tally(kind)
        tally.ops += 1
        tally.requests += done.requests
        tally.down += done.down
        tally.up += done.up
        tally.latencies.append(seconds)

    def fail(self, kind: str, message: str) -> None:
        tally = self.tally(kind)
        tally.ops += 1
        tally.errors += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{kind}: {message}")

    @property
    def error_count(self) -> int:
        return sum(t.errors for t in self.tallies.values())

    @property
    def ops(self) -> int:
        return sum(t.ops for t in self.tallies.values())

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.tallies.values())

    @property
    def moved(self) -> int:
        """Body bytes received and sent, over every operation."""
        return sum(t.down + t.up for t in self.tallies.values())


async def _worker(
    ctx: Context, plan: Plan, rng: random.Random, deadline: float, budget: list[int], report: Report
) -> None:
    kinds, weights = list(plan.mix), list(plan.mix.values())
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choices(kinds, weights)[0]
        started = time.perf_counter()
        try:
            done = await OPERATIONS[kind](ctx, rng)
        except Exception as exc:  # the top of one iteration: counted, and the worker goes on
            report.fail(kind, f"{type(exc).__name__}: {exc}")
        else:
            report.record(kind, done, time.perf_counter() - started)


async def run_async(base_url: str, token: str, fixture: Fixture, plan: Plan) -> Report:
    report, budget = Report(), [plan.max_ops]
    limits = httpx.Limits(max_connections=plan.workers, max_keepalive_connections=plan.workers)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"authorization": f"Bearer {token}"},
        timeout=plan.timeout,
        limits=limits,
    ) as http:
        ctx = Context(http, fixture)
        started = time.monotonic()
        deadline = started + plan.seconds
        tasks = [
            asyncio.create_task(
                _worker(ctx, plan, random.Random(plan.seed * 1000 + n), deadline, budget, report)
            )
            for n in range(plan.workers)
        ]
        _, late = await asyncio.wait(tasks, timeout=plan.seconds + plan.grace)
        for task in late:  # bounded: what outlives the grace period is an error too
            task.cancel()
            report.fail("unfinished", f"a worker was still busy {plan.grace:.0f}s after the end")
        await asyncio.gather(*tasks, return_exceptions=True)
        report.seconds = time.monotonic() - started
    return report


def table(report: Report) -> list[str]:
    """The report as Markdown table lines, one row per operation kind and a total."""
    lines = [
        "| operation | ops | ops/s | requests | errors | p50 / p99 ms | MB down / up |",
        "|---|---|---|---|---|---|---|",
    ]
    seconds = max(report.seconds, 1e-9)
    for kind, t in sorted(report.tallies.items(), key=lambda item: _order(item[0])):
        lines.append(
            f"| {kind} | {t.ops} | {t.ops / seconds:,.1f} | {t.requests} | {t.errors} | "
            f"{t.percentile(0.5) * 1000:.0f} / {t.percentile(0.99) * 1000:.0f} | "
            f"{t.down / MB:,.0f} / {t.up / MB:,.0f} |"
        )
    lines.append(
        f"| **all** | {report.ops} | {report.ops / seconds:,.1f} | {report.requests} | "
        f"{report.error_count} | | {report.moved / MB:,.0f} moved |"
    )
    return lines


def _order(kind: str) -> int:
    kinds = list(OPERATIONS)
    return kinds.index(kind) if kind in kinds else len(kinds)


def run(base_url: str, token: str, fixture: Fixture, plan: Plan) -> Report:
    """Run the plan against the node at `base_url` with an admin `token`; blocks until done."""
    return asyncio.run(run_async(base_url, token, fixture, plan))
