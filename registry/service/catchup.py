"""How far each peer's catch-up has come: entries (cursor against the peer's head) and eager
blob bytes (fetched against wanted), with their recent rates and an ETA. In memory, like
peer health: the fetcher and the pullers run in the `serve` process that answers /v1/peers.

Blob counts start afresh when a peer's queue was empty and a new blob is wanted, so the
figures describe the catch-up under way, not the node's lifetime.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

WINDOW = 10.0  # seconds of samples a rate is measured over


@dataclass(frozen=True)
class CatchUpView:
    entries_per_second: float = 0.0
    entries_eta_seconds: float | None = None
    blobs_wanted: int = 0
    blobs_fetched: int = 0
    bytes_wanted: int = 0
    bytes_fetched: int = 0
    bytes_per_second: float = 0.0
    bytes_eta_seconds: float | None = None


class _Rate:
    """A counter's rate over the last WINDOW seconds."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, value: int, now: float) -> None:
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[1][0] > WINDOW:
            self._samples.popleft()

    def per_second(self, now: float) -> float:
        if len(self._samples) < 2 or now - self._samples[-1][0] > WINDOW:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0


@dataclass
class _Peer:
    pending: set[str] = field(default_factory=set)  # blob digests queued or in flight
    counted: set[str] = field(default_factory=set)  # in blobs_wanted (a retry counts once)
    blobs_wanted: int = 0
    blobs_fetched: int = 0
    bytes_wanted: int = 0
    bytes_fetched: int = 0
    bytes: _Rate = field(default_factory=_Rate)
    entries: _Rate = field(default_factory=_Rate)


class CatchUpBook:
    def __init__(self) -> None:
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()

    def want(self, peer_id: str, digest: str, size: int) -> None:
        with self._lock:
            peer = self._peers.setdefault(peer_id, _Peer())
            if digest in peer.pending:
                return
            if not peer.pending:  # a new catch-up: count it from zero
                peer.blobs_wanted = peer.blobs_fetched = 0
                peer.bytes_wanted = peer.bytes_fetched = 0
                peer.counted.clear()
                peer.bytes = _Rate()
            peer.pending.add(digest)
            if digest not in peer.counted:
                peer.counted.add(digest)
                peer.blobs_wanted += 1
                peer.bytes_wanted += size

    def landed(self, peer_id: str, count: int) -> None:
        """`count` bytes (negative: bytes thrown away, to be fetched again) arrived."""
        with self._lock:
            peer = self._peers.setdefault(peer_id, _Peer())
            peer.bytes_fetched += count
            peer.bytes.sample(peer.bytes_fetched, time.monotonic())

    def done(self, peer_id: str, digest: str, stored: bool) -> None:
        with self._lock:
            peer = self._peers.get(peer_id)
            if peer is None or digest not in peer.pending:
                return
            peer.pending.discard(digest)
            peer.blobs_fetched += stored

    def view(self, peer_id: str, cursor: int, head: int) -> CatchUpView:
        """The peer's figures; `cursor` is sampled here, so the entries' rate is measured
        between the calls (the status page and /v1/peers)."""
        now = time.monotonic()
        with self._lock:
            peer = self._peers.setdefault(peer_id, _Peer())
            peer.entries.sample(cursor, now)
            entries_rate, bytes_rate = peer.entries.per_second(now), peer.bytes.per_second(now)
            left = max(0, peer.bytes_wanted - peer.bytes_fetched) if peer.pending else 0
            return CatchUpView(
                entries_per_second=round(entries_rate, 1),
                entries_eta_seconds=_eta(max(0, head - cursor), entries_rate),
                blobs_wanted=peer.blobs_wanted,
                blobs_fetched=peer.blobs_fetched,
                bytes_wanted=peer.bytes_wanted,
                bytes_fetched=min(peer.bytes_fetched, peer.bytes_wanted),
                bytes_per_second=round(bytes_rate, 1),
                bytes_eta_seconds=_eta(left, bytes_rate),
            )

    def forget(self, peer_id: str) -> None:
        with self._lock:
            self._peers.pop(peer_id, None)


def _eta(left: int, rate: float) -> float | None:
    """Seconds to go at `rate`: 0 when nothing is left, None when nothing is moving."""
    if left == 0:
        return 0.0
    return round(left / rate, 1) if rate > 0 else None
