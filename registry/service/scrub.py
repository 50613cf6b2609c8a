"""Scrubbing: reading every stored blob back to find bytes that rotted or vanished, holding
them (never served) and repairing them from peers and mirrors.

Theory of operation: a pass walks the blob table in BLAKE3 order from a persisted cursor (the
last blob checked), reading each blob from the store at a bounded rate and hashing it (not a
file uploaded through Xet: its bytes are its xorbs', each a blob checked in its turn, whose
BLAKE3 was taken once its chunk hashes had been verified). Bytes
that do not hash to the blob's name, are not its size or cannot be read are corrupt; a row
without bytes is missing. Either is held at once (quarantine.py) and corrupt bytes are set
aside; with a `repair` function (the node's one fetching path: peers, then mirrors, every byte
verified) the blob is fetched again, which lifts the hold. The cursor and the running totals
are saved at least every second and when a run ends, so an interrupted pass resumes after the
last blob it finished, whoever runs it next (`modelyard verify`, or the node itself). One
process scrubs at a time: the "scrub" lease, held only while a run lasts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from registry.domain.clock import now_ms
from registry.domain.digest import Digest
from registry.domain.errors import MACHINE_FAULTS, ScrubRunningError
from registry.metadata.db import Database
from registry.metadata.quarantine import Held
from registry.service.leases import Leases
from registry.service.quarantine import Finding, Quarantine, inspect
from registry.settings import ScrubSettings
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
LEASE = "scrub"
BATCH = 200  # blob rows read per query
SAVE_EVERY = 1.0  # seconds between saves of the cursor during a pass
RETRY_MS = 10 * 60 * 1000  # the node tries a failed repair again after this
TOTALS = ("checked", "checked_bytes", "corrupt", "missing", "repaired", "unrepairable")
_CURSOR, _LAST_RUN = "scrub.cursor", "scrub.last_run"
_LAST_PASS, _SINCE = "scrub.last_pass_ms", "scrub.since_ms"  # a pass's end; the first look
Repair = Callable[[Digest, int], bool]  # fetch a blob (digest, size) again; True when stored


class Stopped(Exception):
    """A run was asked to stop (raised between two reads)."""


class Throttle:
    """Paces reads to `rate` bytes per second (0: no limit). `wait(seconds)` sleeps and says
    whether to stop (`threading.Event.wait`), so a stop ends even a slow run at once."""

    def __init__(
        self, rate: int, wait: Callable[[float], bool], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._wait = wait
        self._clock = clock
        self._due = clock()  # when the bytes read so far are paid for

    def spend(self, n: int) -> None:
        now = self._clock()
        delay = 0.0
        if self._rate > 0:  # time not used (a slow disk, a query) is not saved up for later
            self._due = max(self._due, now) + n / self._rate
            delay = self._due - now
        if self._wait(delay):
            raise Stopped


@dataclass
class ScrubRun:
    """One run of `modelyard verify` or of the node: part of a pass, or a whole one."""

    by: str  # verify | serve
    started_ms: int
    resumed_from: str | None  # the blob the run continued after (None: the first blob)
    finished_ms: int | None = None
    complete: bool = False  # it reached the last blob: the pass is done
    checked: int = 0
    checked_bytes: int = 0
    corrupt: int = 0
    missing: int = 0
    repaired: int = 0
    unrepaired: int = 0  # blobs held when the run ended (the node's, found by any run)
    error: str | None = None


@dataclass(frozen=True)
class ScrubStatus:
    running: str | None  # the process scrubbing now (lease holder)
    cursor: str | None  # the last blob the current or an interrupted pass checked
    last_pass_ms: int | None  # end of the last complete pass
    next_pass_ms: int | None  # when the node starts the next one (None: periodic passes off)
    last_run: ScrubRun | None
    totals: dict[str, int]  # since the node's first scrub: checked, corrupt, repaired, ...
    quarantined: int
    unrepaired: list[Held] = field(default_factory=list)  # the first 100 held blobs


class ScrubService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        quarantine: Quarantine,
        leases: Leases,
        settings: ScrubSettings,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._quarantine = quarantine
        self._leases = leases
        self._settings = settings

    def run(
        self,
        *,
        by: str,
        rate: int,
        repair: Repair | None,
        stop: threading.Event,
        progress: Callable[[int], object] | None = None,
        from_start: bool = False,
        retry_all: bool = False,
    ) -> ScrubRun:
        """Check blobs from the cursor (the first, with `from_start`) to the last, or until
        `stop`; hold bad ones and, given `repair`, fetch them again; then retry the repairs due
        (all of them, with `retry_all`).

        Raises:
            ScrubRunningError: another process scrubs this node now.
        """
        with self._lease():
            resumed = None if from_start else self._value(_CURSOR) or None
            run = ScrubRun(by, now_ms(), resumed)
            tried: set[Digest] = set()
            try:
                self._walk(run, Throttle(rate, stop.wait), repair, progress, tried)
                if repair is not None:
                    self._quarantine.forget_deleted()
                    run.repaired += self._repair_due(repair, stop, retry_all, tried)
            except Stopped:
                logger.info("scrub stopped by=%s", by)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self._finish(run)
            return run

    def repair(self, repair: Repair, stop: threading.Event) -> int:
        """Retry the repairs due, outside a pass; returns how many blobs were repaired."""
        with self._lease():
            return self._repair_due(repair, stop, False, set())

    def pass_due(self) -> bool:
        """Whether the node should scrub now: a pass was interrupted, or the last one ended an
        interval ago. A node's first look only starts the clock."""
        if self._value(_CURSOR):
            return True
        last = self._value(_LAST_PASS) or self._value(_SINCE)
        if last is None:
            with self._db.write(invalidates=False) as tx:
                tx.values.put(_SINCE, str(now_ms()))
            return False
        return now_ms() >= int(last) + self._settings.interval * 1000

    def repairs_due(self) -> bool:
        return bool(self._quarantine.due(now_ms() - RETRY_MS, limit=1))

    def remaining(self, from_start: bool = False) -> tuple[int, int]:
        """Blobs and bytes a run would check (from the cursor, or from the first blob)."""
        cursor = None if from_start else self._value(_CURSOR)
        with self._db.read() as tx:
            left = tx.blobs.totals(Digest(cursor) if cursor else None)
        return left.count, left.bytes

    def status(self) -> ScrubStatus:
        with self._db.read() as tx:
            values = tx.values.many([_CURSOR, _LAST_PASS, _SINCE, _LAST_RUN])
            counters = {
                name.removeprefix("scrub."): value
                for name, value in tx.values.counters("scrub.").items()
            }
        last_pass = int(values[_LAST_PASS]) if _LAST_PASS in values else None
        clock = values.get(_LAST_PASS) or values.get(_SINCE)
        interval_ms = int(self._settings.interval * 1000)
        return ScrubStatus(
            running=self._leases.holder_of(LEASE),
            cursor=values.get(_CURSOR) or None,
            last_pass_ms=last_pass,
            next_pass_ms=int(clock) + interval_ms if clock and self._settings.enabled else None,
            last_run=ScrubRun(**json.loads(values[_LAST_RUN])) if _LAST_RUN in values else None,
            totals={name: counters.get(name, 0) for name in TOTALS},
            quarantined=self._quarantine.count(),
            unrepaired=self._quarantine.listing(),
        )

    @contextmanager
    def _lease(self) -> Iterator[None]:
        if not self._leases.holds(LEASE):
            holder = self._leases.holder_of(LEASE)
            raise ScrubRunningError(
                f"Another process is scrubbing this node ({holder}); "
                "it keeps the same cursor, so a later run continues where it stops",
                detail={"holder": holder},
            )
        try:
            yield
        finally:
            self._leases.release(LEASE)

    def _walk(
        self,
        run: ScrubRun,
        throttle: Throttle,
        repair: Repair | None,
        progress: Callable[[int], object] | None,
        tried: set[Digest],
    ) -> None:
        cursor, unsaved, saved = run.resumed_from or "", [0, 0], time.monotonic()
        try:
            while batch := self._after(cursor):
                for digest, size, rebuilt in batch:
                    if rebuilt:  # a Xet file: its bytes are its xorbs', checked as blobs
                        cursor = digest.hex
                        continue
                    finding = inspect(self._blobs, digest, size, throttle.spend)
                    if finding is not None and not self._quarantine.held(digest):
                        self._found(run, digest, size, finding, repair, tried)
                    cursor = digest.hex
                    run.checked, run.checked_bytes = run.checked + 1, run.checked_bytes + size
                    unsaved = [unsaved[0] + 1, unsaved[1] + size]
                    if progress is not None:
                        progress(size)
                    if time.monotonic() - saved >= SAVE_EVERY:
                        self._save(cursor, unsaved)
                        unsaved, saved = [0, 0], time.monotonic()
            run.complete, cursor = True, ""
        finally:
            self._save(cursor, unsaved, complete=run.complete)

    def _found(
        self,
        run: ScrubRun,
        digest: Digest,
        size: int,
        finding: Finding,
        repair: Repair | None,
        tried: set[Digest],
    ) -> None:
        if not self._quarantine.hold(digest, finding):
            return  # deleted since it was read
        if finding.reason == "corrupt":
            run.corrupt += 1
            self._blobs.set_aside(digest)
        else:
            run.missing += 1
        if repair is not None:
            tried.add(digest)
            run.repaired += self._repair(digest, size, repair)

    def _repair_due(
        self, repair: Repair, stop: threading.Event, retry_all: bool, tried: set[Digest]
    ) -> int:
        before = now_ms() + 1 if retry_all else now_ms() - RETRY_MS
        repaired = 0
        for digest, size in self._quarantine.due(before):
            if stop.is_set():
                break
            if digest not in tried:
                repaired += self._repair(digest, size, repair)
        return repaired

    def _repair(self, digest: Digest, size: int, repair: Repair) -> bool:
        """Fetch a held blob again; its verified write lifts the hold."""
        if self._quarantine.lift_if_good(digest, size):
            return True  # good bytes came back meanwhile (a download, an upload)
        self._blobs.set_aside(digest)  # whatever bad bytes are there now, out of the way
        try:
            fetched = repair(digest, size)
            error = "fetched, yet the stored bytes do not verify" if fetched else ""
        except Exception as exc:  # a repair that fails is recorded on the hold
            error = f"{type(exc).__name__}: {exc}"
        if not self._quarantine.held(digest):
            return True
        self._quarantine.failed(digest, error or "no peer or mirror has a good copy")
        return False

    def _after(self, cursor: str) -> list[tuple[Digest, int, bool]]:
        """The next blob rows: (digest, size, whether its bytes are rebuilt from xorbs)."""
        with self._db.read() as tx:
            page = tx.blobs.page(Digest(cursor) if cursor else None, BATCH)
            rebuilt = tx.xet.files_of(blob.digest for blob in page)
        return [(blob.digest, blob.size, blob.digest in rebuilt) for blob in page]

    def _save(self, cursor: str, unsaved: list[int], *, complete: bool = False) -> None:
        with self._db.write(invalidates=False) as tx:
            tx.values.put(_CURSOR, cursor)
            if complete:
                tx.values.put(_LAST_PASS, str(now_ms()))
            tx.values.bump("scrub.checked", unsaved[0])
            tx.values.bump("scrub.checked_bytes", unsaved[1])

    def _finish(self, run: ScrubRun) -> None:
        run.unrepaired = self._quarantine.count()
        run.finished_ms = now_ms()
        with self._db.write(invalidates=False) as tx:
            tx.values.put(_LAST_RUN, json.dumps(asdict(run)))
        logger.info(
            "scrub run by=%s complete=%s checked=%d corrupt=%d missing=%d repaired=%d held=%d",
            run.by,
            run.complete,
            run.checked,
            run.corrupt,
            run.missing,
            run.repaired,
            run.unrepaired,
        )

    def _value(self, key: str) -> str | None:
        with self._db.read() as tx:
            return tx.values.get(key)


class ScrubLoop:
    """The node's own scrubbing in `modelyard serve`: a pass every `interval` (resuming an
    interrupted one first), and retries of failed repairs in between. It takes the lease only
    while working, so a `modelyard verify` started meanwhile gets its turn."""

    TICK = 30.0  # seconds between looks at whether work is due

    def __init__(self, service: ScrubService, settings: ScrubSettings, repair: Repair) -> None:
        self._service = service
        self._settings = settings
        self._repair = repair
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scrub", daemon=True)

    def start(self) -> None:
        if self._settings.enabled:
            self._thread.start()

    def halt(self) -> None:
        """Ask the thread to end (a pass stops at its next file), without waiting for it."""
        self._stop.set()

    def stop(self) -> None:
        self.halt()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(min(self.TICK, self._settings.interval)):
            try:
                if self._service.pass_due():
                    self._service.run(
                        by="serve", rate=self._settings.rate, repair=self._repair, stop=self._stop
                    )
                elif self._service.repairs_due():
                    self._service.repair(self._repair, self._stop)
            except ScrubRunningError:
                continue  # a `modelyard verify` (or another process of the node) scrubs now
            except MACHINE_FAULTS as exc:  # the disk or the database: one line, no traceback
                logger.warning("scrub failed error=%s", exc)
            except Exception:  # logged; the next look tries again
                logger.exception("scrub failed")
