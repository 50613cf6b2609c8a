"""Prometheus metrics on an injected CollectorRegistry (no default-registry globals).

Request metrics are recorded by `HttpMetrics` (an ASGI layer outside the router, so fast-path
answers are counted too); node state (blobs, change log, peers) is read at scrape time by
`NodeCollector`. Labels stay low-cardinality: route templates, methods, status classes, and
peer ids (bounded by configuration); never repo names or digests.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.domain.errors import StorageError

ROUTE_KEY = "modelyard.route"  # set by layers that answer without the router
# Names the abuse limit (a LimitSettings field) that refused a request; counted below.
LIMIT_HEADER = "X-Modelyard-Limit"
_LIMIT_KEY = LIMIT_HEADER.lower().encode()


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelyard_http_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelyard_http_request_duration_seconds",
            "Time to answer, headers to last byte",
            ["route", "method"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.received = Counter(
            "modelyard_http_received_bytes_total",
            "Request body bytes",
            ["route"],
            registry=registry,
        )
        self.sent = Counter(
            "modelyard_http_sent_bytes_total", "Response body bytes", ["route"], registry=registry
        )
        self.limit_rejections = Counter(
            "modelyard_limit_rejections_total",
            "Requests refused by an abuse limit (rate, size), by the limit's setting",
            ["limit"],
            registry=registry,
        )


class HttpMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counts = {"status": 500, "in": 0, "out": 0}

        async def counting_receive() -> Message:
            message = await receive()
            counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                for key, value in message.get("headers", ()):
                    if key == _LIMIT_KEY:
                        self.metrics.limit_rejections.labels(value.decode("latin-1")).inc()
            else:
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = scope.get(ROUTE_KEY) or getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            m = self.metrics
            m.requests.labels(route, method, f"{counts['status'] // 100}xx").inc()
            m.latency.labels(route, method).observe(time.perf_counter() - started)
            if counts["in"]:
                m.received.labels(route).inc(counts["in"])
            if counts["out"]:
                m.sent.labels(route).inc(counts["out"])


@dataclass(frozen=True)
class PeerSample:
    peer: str
    state: str
    lag_entries: int
    lag_seconds: float
    last_success: float | None  # unix seconds
    bad_blobs: int
    set_aside: int  # entries of its abandoned history kept here
    diverged: float | None  # unix seconds of the last divergence found
    collisions: int  # its repos whose ids are held here for another home


@dataclass(frozen=True)
class MirrorSample:
    mirror: str
    backlog: int
    failing: bool
    last_success: float | None  # unix seconds
    rollbacks: int  # refs moved back past commits this node lost (kept on the mirror)


@dataclass(frozen=True)
class ScrubSample:
    totals: dict[str, int]  # checked, checked_bytes, corrupt, missing, repaired, unrepairable
    quarantined: int
    last_pass: float | None  # unix seconds


@dataclass(frozen=True)
class HealthSample:
    """What is known even while the database is down."""

    disk_free: int
    disk_size: int
    disk_reserve: int
    disk_state: str  # ok | low | full | unwritable
    database_up: bool
    blob_store_up: bool  # false: an S3 store's last request failed


DISK_STATES = ("ok", "low", "full", "unwritable")


@dataclass(frozen=True)
class NodeSample:
    blobs: int
    blob_bytes: int
    serial: int
    started: float  # unix seconds
    peers: list[PeerSample]
    index_lag_entries: int
    index_lag_seconds: float
    scan_pending: int
    mirrors: list[MirrorSample]
    scrub: ScrubSample


PEER_STATES = ("unknown", "up", "degraded", "down", "resyncing", "diverged")


class NodeCollector(Collector):
    """Reads the node's state at scrape time through `sample`."""

    def __init__(
        self, sample: Callable[[], NodeSample], health: Callable[[], HealthSample]
    ) -> None:
        self._sample = sample
        self._health = health

    def collect(self) -> Iterator[Metric]:
        yield from _health_metrics(self._health())
        yield GaugeMetricFamily(
            "modelyard_gc_frozen_objects",
            "Objects kept out of Python's cyclic collector (`modelyard serve` freezes those built "
            "at startup)",
            value=gc.get_freeze_count(),
        )
        try:
            s = self._sample()
        except StorageError:  # the database is down: what it holds is not known now
            return
        yield GaugeMetricFamily("modelyard_blob_store_blobs", "Blobs stored", value=s.blobs)
        yield GaugeMetricFamily(
            "modelyard_blob_store_size_bytes", "Bytes of blobs stored", value=s.blob_bytes
        )
        yield GaugeMetricFamily(
            "modelyard_change_log_serial", "Head serial of the change log", value=s.serial
        )
        yield GaugeMetricFamily(
            "modelyard_start_time_seconds", "Start of this node process", value=s.started
        )
        yield GaugeMetricFamily(
            "modelyard_index_lag_entries",
            "Change-log entries the search index has not caught up with",
            value=s.index_lag_entries,
        )
        yield GaugeMetricFamily(
            "modelyard_index_lag_seconds",
            "Age of the oldest change the search index has not caught up with",
            value=s.index_lag_seconds,
        )
        yield GaugeMetricFamily(
            "modelyard_scan_pending_files",
            "Files waiting for a safety verdict (counted up to 1000)",
            value=s.scan_pending,
        )
        state = GaugeMetricFamily(
            "modelyard_peer_state", "1 for the peer's current state", labels=["peer", "state"]
        )
        lag = GaugeMetricFamily(
            "modelyard_sync_lag_entries", "Feed entries not applied yet", labels=["peer"]
        )
        lag_s = GaugeMetricFamily(
            "modelyard_sync_lag_seconds", "Age of the oldest unapplied change", labels=["peer"]
        )
        last = GaugeMetricFamily(
            "modelyard_sync_last_success_timestamp_seconds",
            "Last successful pull or probe",
            labels=["peer"],
        )
        bad = CounterMetricFamily(
            "modelyard_peer_bad_blobs", "Blobs a peer served with wrong bytes", labels=["peer"]
        )
        set_aside = GaugeMetricFamily(
            "modelyard_peer_set_aside_entries",
            "Entries of a peer's abandoned history (it was restored) kept here for recovery",
            labels=["peer"],
        )
        diverged = GaugeMetricFamily(
            "modelyard_peer_diverged_timestamp_seconds",
            "When the peer's history was last found to have diverged",
            labels=["peer"],
        )
        collided = GaugeMetricFamily(
            "modelyard_peer_repo_collisions",
            "Repos of the peer whose ids are held here for another home (kept under qualified ids)",
            labels=["peer"],
        )
        for p in s.peers:
            collided.add_metric([p.peer], p.collisions)
            set_aside.add_metric([p.peer], p.set_aside)
            if p.diverged is not None:
                diverged.add_metric([p.peer], p.diverged)
            for name in PEER_STATES:
                state.add_metric([p.peer, name], 1.0 if p.state == name else 0.0)
            lag.add_metric([p.peer], p.lag_entries)
            lag_s.add_metric([p.peer], p.lag_seconds)
            if p.last_success is not None:
                last.add_metric([p.peer], p.last_success)
            bad.add_metric([p.peer], p.bad_blobs)
        yield from (state, lag, lag_s, last, bad, set_aside, diverged, collided)
        yield from _mirror_metrics(s.mirrors)
        yield from _scrub_metrics(s.scrub)


def _health_metrics(h: HealthSample) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "modelyard_data_dir_free_bytes", "Free space on the data dir's disk", value=h.disk_free
    )
    yield GaugeMetricFamily(
        "modelyard_data_dir_size_bytes", "Size of the data dir's disk", value=h.disk_size
    )
    yield GaugeMetricFamily(
        "modelyard_data_dir_reserve_bytes",
        "Free space kept for the database: uploads that would leave less are refused",
        value=h.disk_reserve,
    )
    state = GaugeMetricFamily(
        "modelyard_data_dir_state", "1 for the data dir's current state", labels=["state"]
    )
    for name in DISK_STATES:
        state.add_metric([name], 1.0 if h.disk_state == name else 0.0)
    yield state
    yield GaugeMetricFamily(
        "modelyard_database_up", "1 if the database answers", value=1.0 if h.database_up else 0.0
    )
    yield GaugeMetricFamily(
        "modelyard_blob_store_up",
        "0 while the blob store's last request failed (S3, past its retries)",
        value=1.0 if h.blob_store_up else 0.0,
    )


def _mirror_metrics(mirrors: list[MirrorSample]) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "modelyard_mirror_backlog", "Changes waiting in a mirror's outbox", labels=["mirror"]
    )
    failing = GaugeMetricFamily(
        "modelyard_mirror_failing", "1 if the newest push to the mirror failed", labels=["mirror"]
    )
    last = GaugeMetricFamily(
        "modelyard_mirror_last_success_timestamp_seconds",
        "Last successful push to the mirror",
        labels=["mirror"],
    )
    rollbacks = GaugeMetricFamily(
        "modelyard_mirror_rollbacks",
        "Refs a push moved back past commits this node lost (a restore); each kept on the mirror",
        labels=["mirror"],
    )
    for m in mirrors:
        backlog.add_metric([m.mirror], m.backlog)
        failing.add_metric([m.mirror], 1.0 if m.failing else 0.0)
        rollbacks.add_metric([m.mirror], m.rollbacks)
        if m.last_success is not None:
            last.add_metric([m.mirror], m.last_success)
    yield from (backlog, failing, last, rollbacks)


_SCRUB_TOTALS = (
    ("checked", "modelyard_scrub_checked_blobs", "Blobs a scrub read back and hashed"),
    ("checked_bytes", "modelyard_scrub_checked_bytes", "Bytes a scrub read back and hashed"),
    ("corrupt", "modelyard_scrub_corrupt_blobs", "Blobs found not to hash to their name"),
    ("missing", "modelyard_scrub_missing_blobs", "Blobs found recorded but not stored"),
    ("repaired", "modelyard_scrub_repaired_blobs", "Held blobs whose good bytes came back"),
    (
        "unrepairable",
        "modelyard_scrub_unrepairable_blobs",
        "Repairs that found no good copy at any peer or mirror",
    ),
)


def _scrub_metrics(scrub: ScrubSample) -> Iterator[Metric]:
    """Totals kept in the database: `modelyard verify` runs in a process of its own."""
    for key, name, documentation in _SCRUB_TOTALS:
        yield CounterMetricFamily(name, documentation, value=scrub.totals.get(key, 0))
    yield GaugeMetricFamily(
        "modelyard_scrub_quarantined_blobs",
        "Blobs held (never served) until good bytes are back",
        value=scrub.quarantined,
    )
    if scrub.last_pass is not None:
        yield GaugeMetricFamily(
            "modelyard_scrub_last_pass_timestamp_seconds",
            "End of the last complete scrub pass",
            value=scrub.last_pass,
        )
