"""Scheduling: one puller thread per configured peer, a health prober, blob fetchers.

Peers added or removed through the API are picked up within a second; nothing needs a
restart. A failing pull is retried with exponential backoff and jitter (tenacity), forever,
so one misbehaving peer never stops replication from the others; its backoff ends at once when
the node stops. When several processes of a node share its database, each peer's puller and the
backfill run in the one process that holds their lease; every process probes (health is kept
per process).
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_not_exception_type,
    wait_random_exponential,
)

from registry.client import RetryPolicy
from registry.domain.access import CONSOLE
from registry.domain.errors import MACHINE_FAULTS, PeerNotFoundError
from registry.service.identity import NodeIdentity
from registry.service.leases import Leases
from registry.service.peers import PeerService
from registry.service.replication import ReplicationService
from registry.settings import SyncSettings
from sync.bootstrap import Bootstrapper
from sync.connect import PeerConnector
from sync.fetcher import BlobFetcher
from sync.puller import Puller

logger = logging.getLogger(__name__)
FAULT_PAUSE = 5.0  # seconds to wait after the node's database failed a look at the peers
LEASE_RETRY = 1.0  # seconds between tries for a lease another process holds
STOP_GRACE = 1.0  # seconds after a halt that a stop waits for the threads, all together


class SyncLoop:
    def __init__(
        self,
        node: NodeIdentity,
        leases: Leases,
        peers: PeerService,
        replication: ReplicationService,
        fetcher: BlobFetcher,
        connect: PeerConnector,
        settings: SyncSettings,
        bootstrap: Bootstrapper,
    ) -> None:
        self._node = node
        self._leases = leases
        self._peers = peers
        self._replication = replication
        self._settings = settings
        self._connect = connect
        self._bootstrap = bootstrap  # a new peer's snapshot, before its first pull
        self.fetcher = fetcher
        self._stop = threading.Event()
        self._stop_by = 0.0  # when a stop stops waiting for the threads (0: not halted)
        # Set by the prober when a peer answers again: its puller stops backing off at once.
        self._wake: dict[str, threading.Event] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for peer in self._settings.peers:
            token = peer.token.get_secret_value() if peer.token else None
            self._peers.add(
                CONSOLE, peer.url, token, peer.blobs, exist_ok=True, bootstrap=peer.bootstrap
            )
        for target, name in (
            (self._supervise, "sync-supervisor"),
            (self._probe, "sync-probe"),
            (self._backfill, "sync-backfill"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def halt(self) -> None:
        """Ask every thread to stop (no new pull, no backoff sleep) without waiting for them.
        The grace `stop()` gives them counts from the first halt: a server halts the pullers as
        it begins to stop, and they end while its requests drain."""
        if not self._stop_by:
            self._stop_by = time.monotonic() + STOP_GRACE
        self._stop.set()
        for event in list(self._wake.values()):
            event.set()

    def stop(self) -> None:
        """Halt, and wait a little for the threads. A puller inside a peer's long-poll cannot
        be woken (a blocking read); it is a daemon thread and ends with the process, and what
        it would apply is applied by the next start: the cursor moves only with its batch."""
        self.halt()
        threads = [*self._threads, *self._workers.values()]
        for thread in threads:
            thread.join(timeout=max(0.0, self._stop_by - time.monotonic()))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            logger.info("sync threads left to end with the process threads=%s", ",".join(left))

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            try:
                wanted = {p.id for p in self._peers.all()}
            except MACHINE_FAULTS as exc:  # the database is down: one line, try again
                logger.warning("listing peers failed error=%s", exc)
                self._stop.wait(FAULT_PAUSE)
                continue
            except Exception:  # keep supervising; logged
                logger.exception("listing peers failed")
                continue
            for peer_id in wanted - self._workers.keys():
                thread = threading.Thread(
                    target=self._run_peer, args=(peer_id,), name=f"sync-{peer_id}", daemon=True
                )
                self._workers[peer_id] = thread
                thread.start()
            for peer_id in [p for p, t in self._workers.items() if not t.is_alive()]:
                del self._workers[peer_id]

    def _run_peer(self, peer_id: str) -> None:
        puller = Puller(
            peer_id,
            self._connect,
            self._replication,
            self.fetcher,
            self._settings,
        )

        def failed(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._peers.health.failure(peer_id, f"{type(exc).__name__}: {exc}", pull=True)

        wake = self._wake.setdefault(peer_id, threading.Event())

        def sleep(seconds: float) -> None:
            if not self._stop.is_set():  # halt() sets `wake` too: a stop cuts the sleep short
                wake.wait(seconds)  # ... as does the peer answering a probe again
            wake.clear()

        def pull() -> bool:
            if not self._leases.holds(f"sync:{peer_id}"):
                return False
            if not self._bootstrap.join(peer_id):
                puller.pull_once()
            return True

        retrying = Retrying(
            retry=retry_if_not_exception_type(PeerNotFoundError),
            wait=wait_random_exponential(multiplier=0.2, max=10),
            sleep=sleep,
            before_sleep=failed,
            retry_error_callback=lambda _: None,
            stop=lambda _: self._stop.is_set(),
        )
        try:
            while not self._stop.is_set():
                if retrying(pull):
                    self._peers.health.success(peer_id, pull=True)
                else:  # another process pulls this peer (or we are stopping)
                    self._stop.wait(LEASE_RETRY)
        except PeerNotFoundError:
            logger.info("peer removed, puller stops peer=%s", peer_id)
        finally:
            puller.close()

    def _backfill(self) -> None:
        """Re-queue blobs still missing (after a restart, or when every source failed)."""
        interval = 0.0
        while not self._stop.wait(interval):
            interval = self._settings.backfill_interval
            try:
                eager = any(p.blobs == "eager" for p in self._peers.all())
                if eager and self._leases.holds("sync-backfill"):
                    self.fetcher.enqueue(self._replication.missing_blobs())
            except MACHINE_FAULTS as exc:  # the disk or the database: one line, try again
                logger.warning("blob backfill failed error=%s", exc)
            except Exception:  # keep sweeping; logged
                logger.exception("blob backfill failed")

    def _probe(self) -> None:
        while not self._stop.wait(self._settings.probe_interval):
            try:
                peers = self._peers.all()
            except MACHINE_FAULTS as exc:  # the database is down: probe again later
                logger.warning("listing peers to probe failed error=%s", exc)
                self._stop.wait(FAULT_PAUSE)
                continue
            for peer in peers:
                try:
                    with self._connect.client(
                        peer, RetryPolicy(attempts=1), max(1.0, self._settings.probe_interval)
                    ) as client:
                        client.health()
                    if self._peers.health.get(peer.id).state != "up":
                        self._wake.get(peer.id, threading.Event()).set()
                    self._peers.health.success(peer.id)
                except Exception as exc:  # a failed probe is data, not an error
                    self._peers.health.failure(
                        peer.id,
                        f"probe: {type(exc).__name__}: {exc}",
                        refused=isinstance(exc, httpx.ConnectError),
                    )
