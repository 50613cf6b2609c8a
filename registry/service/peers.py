"""Configured peers (persisted) and their health (in memory, fed by the sync loop).

A peer's token is stored through a CredentialBox (sealed when the node has a credentials
key), opened only by `credential()` when the node talks to the peer, and never shown back:
views say only whether one is set.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from registry.domain.access import Principal, require_admin
from registry.domain.clock import now_ms
from registry.domain.errors import (
    ConflictError,
    InvalidError,
    PeerIsSelfError,
    PeerNotFoundError,
)
from registry.domain.records import PeerRecord
from registry.domain.redaction import redact
from registry.domain.tokens import check_credential
from registry.domain.urls import check_http_url
from registry.metadata.db import Database
from registry.service.catchup import CatchUpBook, CatchUpView
from registry.service.credentials import CredentialBox
from registry.service.replication import collisions

logger = logging.getLogger(__name__)
BLOB_POLICIES = ("eager", "lazy")
BOOTSTRAP_MODES = ("snapshot", "replay", "auto")
BOOTSTRAP = "bootstrap:"  # node values: "bootstrap:<peer url>" -> how a new peer is joined


@dataclass(frozen=True)
class Health:
    state: str = "unknown"  # unknown | up | degraded | down
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive
    last_success_ms: int | None = None
    last_error: str | None = None  # of a probe or pull: cleared once up
    last_error_ms: int | None = None
    bad_blobs: int = 0  # blobs this peer served with wrong bytes
    bad_blob_error: str | None = None  # the newest of those: kept, whatever its pulls do
    bad_blob_ms: int | None = None
    unhealthy_since_ms: int | None = None  # when it last left up (or was first found down)
    pulls_failing: bool = False  # the last pull failed: a probe alone does not make it up


@dataclass(frozen=True)
class Thresholds:
    degraded_after: int = 2
    down_after: int = 5
    up_after: int = 3


class HealthBook:
    """Per-peer health, updated by probes, pulls and blob fetches."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._t = thresholds
        self._health: dict[str, Health] = {}
        self._lock = threading.Lock()

    def get(self, peer_id: str) -> Health:
        return self._health.get(peer_id, Health())

    def success(self, peer_id: str, *, pull: bool = False) -> None:
        """Count a success: a pull's, or (`pull=False`) a probe's, which does not make a peer
        whose pulls fail up. Once up, the last error is cleared, and the way back is logged
        once (a probe answers every few seconds: only the transition is news)."""
        with self._lock:
            h = self.get(peer_id)
            failing = False if pull else h.pulls_failing
            successes = h.successes + 1
            state = h.state
            if not failing and (state != "down" or successes >= self._t.up_after):
                state = "up"
            if state == "up" and h.unhealthy_since_ms is not None:
                seconds = (now_ms() - h.unhealthy_since_ms) / 1000
                logger.info("peer up again peer=%s after=%.0fs", peer_id, seconds)
            self._health[peer_id] = replace(
                h,
                state=state,
                failures=0 if not failing else h.failures,
                successes=successes,
                last_success_ms=now_ms(),
                last_error=None if state == "up" else h.last_error,
                last_error_ms=None if state == "up" else h.last_error_ms,
                unhealthy_since_ms=None if state == "up" else h.unhealthy_since_ms,
                pulls_failing=failing,
            )

    def failure(
        self, peer_id: str, error: str, *, refused: bool = False, pull: bool = False
    ) -> None:
        """Count a failure (a pull's with `pull`); a refused connection (nothing listens) is
        down at once. Only leaving up (or a first state) is logged as a warning: the prober and
        the puller retry every few seconds, and each retry of a peer known to be down is not
        news."""
        error = redact(error)  # shown in the API and status; a remote's answer may quote one
        with self._lock:
            h = self.get(peer_id)
            failures = h.failures + 1
            state = h.state
            if refused or failures >= self._t.down_after:
                state = "down"
            elif failures >= self._t.degraded_after and state != "down":
                state = "degraded"
            elif state == "up" and pull:
                state = "degraded"  # never up while its pulls fail
            since = h.unhealthy_since_ms
            if state != h.state and since is None:
                logger.warning("peer state peer=%s state=%s error=%s", peer_id, state, error)
                since = now_ms()
            elif state != h.state:
                logger.debug("peer state peer=%s state=%s error=%s", peer_id, state, error)
            self._health[peer_id] = replace(
                h,
                state=state,
                failures=failures,
                successes=0,
                last_error=error[:300],
                last_error_ms=now_ms(),
                unhealthy_since_ms=since,
                pulls_failing=h.pulls_failing or pull,
            )

    def bad_blob(self, peer_id: str, error: str) -> None:
        with self._lock:
            h = self.get(peer_id)
            error = redact(error)[:300]
            self._health[peer_id] = replace(
                h, bad_blobs=h.bad_blobs + 1, bad_blob_error=error, bad_blob_ms=now_ms()
            )

    def forget(self, peer_id: str) -> None:
        with self._lock:
            self._health.pop(peer_id, None)


@dataclass(frozen=True)
class PeerView:
    """A peer as operators see it: configuration, health and lag (never its token)."""

    id: str
    url: str
    token_set: bool
    blobs: str
    node_id: str | None
    epoch: str | None  # the peer's history as last heard: a new one after its restore
    state: str
    cursor: int
    head: int
    lag_entries: int
    lag_seconds: float
    last_success_ms: int | None
    last_error: str | None  # a probe's or pull's (cleared once up), else a bad blob's (kept)
    last_error_ms: int | None  # when that error happened
    bad_blobs: int
    diverged_ms: int | None  # when its history was last found to have diverged
    set_aside: int  # entries of its abandoned history this node keeps (recoverable)
    collisions: int  # its repos whose ids are held here for another home (see /v1/status)
    catch_up: CatchUpView = CatchUpView()  # entries and blob bytes still to come, and rates


class PeerService:
    def __init__(
        self, db: Database, thresholds: Thresholds, box: CredentialBox, node_id: str
    ) -> None:
        self._db = db
        self._box = box
        self._node_id = node_id
        self.health = HealthBook(thresholds)
        self.catchup = CatchUpBook()
        self.started = time.monotonic()

    def add(
        self,
        principal: Principal,
        url: str,
        token: str | None,
        blobs: str,
        *,
        exist_ok: bool = False,
        identify: Callable[[str], str | None] | None = None,
        bootstrap: str | None = None,
    ) -> PeerView:
        """Start pulling from the node at `url` (the admin's call); `exist_ok` updates the
        token and blob policy of a peer configured already instead of refusing. `identify`
        asks `url` for its node id (None: no answer): this node's own is refused.
        `bootstrap` says how a new peer is joined (sync.bootstrap): from its snapshot, by
        replaying its log, or `auto`; noted with the peer, so its puller never replays first
        (None: replay; a peer configured already keeps what it was given).

        Raises:
            PeerIsSelfError: `url` answers as this node.
        """
        require_admin(principal)
        url = check_http_url(url, "A peer's url")
        if identify is not None:
            self._refuse_self(identify(url), url)
        token = check_credential(token, "A peer's token")
        if blobs not in BLOB_POLICIES:
            raise InvalidError(f"blobs must be one of {BLOB_POLICIES}, got {blobs!r}")
        if bootstrap not in (None, *BOOTSTRAP_MODES):
            raise InvalidError(f"bootstrap must be one of {BOOTSTRAP_MODES}, got {bootstrap!r}")
        with self._db.write() as tx:
            existing = tx.peers.by_url(url)
            if existing is not None:
                if not exist_ok:
                    raise ConflictError(f"Peer {url} is already configured as {existing.id}")
                stored = existing.stored_token
                if self._box.unseal(stored, existing.id) != token:
                    stored = self._box.seal(token)
                return self._view(tx.peers.configure(existing.id, stored, blobs))
            peer_id = "p-" + hashlib.sha256(url.encode()).hexdigest()[:10]
            peer = tx.peers.add(peer_id, url, self._box.seal(token), blobs)
            if bootstrap is not None:
                tx.values.put(BOOTSTRAP + url, bootstrap)
        logger.info("peer added peer=%s url=%s blobs=%s", peer.id, url, blobs)
        return self._view(peer)

    def all(self) -> list[PeerRecord]:
        with self._db.read() as tx:
            return tx.peers.all()

    def listing(self, principal: Principal) -> list[PeerView]:
        """Every peer with its health and lag (the admin's call)."""
        require_admin(principal)
        return self.views()

    def views(self) -> list[PeerView]:
        """Every peer with its health and lag (what the status page shows)."""
        with self._db.read() as tx:
            peers, set_aside = tx.peers.all(), tx.changes.abandoned()
            homes = Counter(c.home for c in collisions(tx))
        return [self._view(peer, set_aside, homes) for peer in peers]

    def _view(
        self,
        peer: PeerRecord,
        set_aside: dict[str, int] | None = None,
        collided: Counter[str] | None = None,
    ) -> PeerView:
        """Its state: `down` or `degraded` while probes or pulls fail; else `resyncing` while
        it reads its new history again after a divergence, `diverged` while entries of its
        old history are kept here (recoverable: see `modelyard recover`); else its health."""
        health = self.health.get(peer.id)
        behind = peer.behind_since_ms
        kept = (set_aside or {}).get(peer.node_id or "", 0)
        state = health.state
        if state not in ("down", "degraded"):
            if peer.resync_to is not None:
                state = "resyncing"
            elif kept:
                state = "diverged"
        return PeerView(
            peer.id,
            peer.url,
            peer.token_set,
            peer.blobs,
            peer.node_id,
            peer.epoch,
            state,
            peer.cursor,
            peer.head,
            max(0, peer.head - peer.cursor),
            0.0 if behind is None else (now_ms() - behind) / 1000,
            health.last_success_ms,
            health.last_error or health.bad_blob_error,
            health.last_error_ms if health.last_error else health.bad_blob_ms,
            health.bad_blobs,
            peer.diverged_ms,
            kept,
            (collided or Counter()).get(peer.node_id or "", 0),
            self.catchup.view(peer.id, peer.cursor, peer.head),
        )

    def credential(self, peer: PeerRecord) -> str | None:
        """The token to send to `peer` (opened only here, when the node talks to it)."""
        return self._box.unseal(peer.stored_token, f"peer {peer.id}")

    def reseal(self) -> None:
        """At start: check every stored token opens, and seal those kept as given once a
        credentials key is configured."""
        with self._db.write() as tx:
            for peer in tx.peers.all():
                sealed = self._box.reseal(peer.stored_token, f"peer {peer.id}")
                if sealed is not None:
                    tx.peers.set_token(peer.id, sealed)

    def get(self, peer_id: str) -> PeerRecord:
        with self._db.read() as tx:
            peer = tx.peers.get(peer_id)
        if peer is None:
            raise PeerNotFoundError(f"No peer {peer_id!r}")
        return peer

    def remove(self, principal: Principal, peer_id: str) -> None:
        """Stop pulling from a peer (the admin's call); what was replicated stays. How it was
        to be joined goes with it: added again, it is decided afresh."""
        require_admin(principal)
        with self._db.write() as tx:
            peer = tx.peers.get(peer_id)
            if peer is None or not tx.peers.remove(peer_id):
                raise PeerNotFoundError(f"No peer {peer_id!r}")
            tx.values.delete(BOOTSTRAP + peer.url)
        self.health.forget(peer_id)
        self.catchup.forget(peer_id)
        logger.info("peer removed peer=%s", peer_id)

    def _refuse_self(self, answered_as: str | None, url: str) -> None:
        if answered_as == self._node_id:
            raise PeerIsSelfError(
                f"{url} is this node itself (node id {self._node_id}): a node does not pull "
                "from itself; give the URL of another node",
                detail={"url": url, "node_id": self._node_id},
            )

    def contact(self, peer_id: str, node_id: str, epoch: str) -> tuple[PeerRecord, bool]:
        """Record who answered; True with it when the peer's epoch changed (it was restored
        or reset: what was read of its history must be checked again).

        Raises:
            PeerIsSelfError: the peer's URL leads back to this node.
        """
        with self._db.read() as tx:
            peer = tx.peers.get(peer_id)
        self._refuse_self(node_id, peer.url if peer is not None else peer_id)
        if peer is not None and peer.node_id is not None and peer.epoch == epoch:
            return peer, False  # as it was: no write (it would wait for the write lock)
        with self._db.write() as tx:
            peer = tx.peers.get(peer_id)
            if peer is None:
                raise PeerNotFoundError(f"No peer {peer_id!r}")
            changed = peer.epoch not in (None, epoch)
            if changed:
                logger.warning("peer epoch changed peer=%s; its history is checked", peer_id)
            known = node_id if peer.node_id is None else peer.node_id  # first answer sticks
            return tx.peers.contacted(peer_id, known, epoch), changed

    def copy_age(self, home_node: str) -> float | None:
        """Seconds since we last heard from the home's feed (directly, else any peer's)."""
        peers = self.all()
        direct = [p for p in peers if p.node_id == home_node]
        times = [self.health.get(p.id).last_success_ms for p in direct or peers]
        known = [t for t in times if t is not None]
        return (now_ms() - max(known)) / 1000 if known else None
