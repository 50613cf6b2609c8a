"""`modelyard verify`: re-hash a node's stored blobs, hold bad ones and repair them, on the
node's own database and blob store (the settings `modelyard serve` reads), running or not."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import click
from pydantic import ByteSize, TypeAdapter, ValidationError
from tqdm import tqdm

from registry.cli_common import (
    config_option,
    configure_logging,
    data_dir_option,
    fail,
    settings_from,
)
from registry.domain.errors import RegistryError
from registry.metadata.db import Database
from registry.service.quarantine import Held
from registry.service.scrub import ScrubRun, ScrubService
from registry.settings import Settings

EXIT_HELD = 1  # some blobs stay held: no good copy was found
EXIT_INTERRUPTED = 130


def _rate(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(TypeAdapter(ByteSize).validate_python(value))
    except ValidationError:
        raise click.BadParameter(f"{value!r} is not bytes per second (200MiB, 1G, 0)") from None


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM end the run after the blob being read; the cursor is kept."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.option(
    "--rate",
    callback=_rate,
    metavar="BYTES/S",
    help="Bytes read per second, e.g. 200MiB; 0: no limit [env MODELYARD_SCRUB__RATE; 32MiB].",
)
@click.option(
    "--repair/--no-repair",
    default=True,
    show_default=True,
    help="Fetch good copies of corrupt and missing blobs from peers and mirrors.",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Begin a new pass at the first blob, instead of continuing an interrupted one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@data_dir_option
@config_option
def verify(
    rate: int | None,
    repair: bool,
    from_start: bool,
    as_json: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Read every stored blob back and check its BLAKE3 and size.

    Corrupt or missing blobs are quarantined at once (never served again, also by a node
    running on this data) and, with --repair, fetched again from peers and mirrors. An
    interrupted run (Ctrl-C) continues where it stopped next time.

    Exit status: 0 all blobs good (or repaired); 1 some stay quarantined; 4 another process
    scrubs this node now; 130 interrupted.
    """
    settings = settings_from(config, data_dir=data_dir)
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        with _stop_on_signals() as stop:
            run, held = _verify(settings, db, rate, repair, from_start, as_json, stop)
    except RegistryError as exc:
        fail(exc)
    finally:
        db.dispose()
    _report(run, held, as_json)
    if not run.complete and stop.is_set():
        sys.exit(EXIT_INTERRUPTED)
    if run.unrepaired:
        sys.exit(EXIT_HELD)


def _verify(
    settings: Settings,
    db: Database,
    rate: int | None,
    repair: bool,
    from_start: bool,
    quiet: bool,
    stop: threading.Event,
) -> tuple[ScrubRun, list[Held]]:
    from mirror.pullthrough import MirrorBlobSources, public_copies
    from registry.service.credentials import credential_box
    from registry.service.leases import Leases
    from registry.service.lookup import LookupService
    from registry.service.mirrors import MirrorService
    from registry.service.node import NodeIdentity
    from registry.service.peers import PeerService, Thresholds
    from registry.service.quarantine import Quarantine
    from registry.service.uploads import UploadService
    from registry.storage.build import build_blob_store
    from sync.blobs import BlobFetcher
    from sync.connect import PeerConnector

    blobs = build_blob_store(settings)
    identity = NodeIdentity.load(db, settings.node_id)
    holder = f"{identity.node_id}/verify/{socket.gethostname()}/{os.getpid()}"
    leases = Leases(db, holder, settings.lease_seconds)
    quarantine = Quarantine(db, blobs)
    scrub = ScrubService(db, blobs, quarantine, leases, settings.scrub)
    box = credential_box(settings)
    mirrors = MirrorService(db, settings.mirror.retry_initial, settings.mirror.retry_max, box)
    private = settings.allow_private_redirects
    fetcher = BlobFetcher(
        UploadService(db, blobs, identity, quarantine),
        PeerConnector(PeerService(db, Thresholds(), box), identity.node_id, private),
        workers=1,
        extra=MirrorBlobSources(
            mirrors, public_copies(LookupService(db)), allow_private_redirects=private
        ),
    )
    _, total = scrub.remaining(from_start)
    leases.start()
    try:
        with tqdm(total=total, unit="B", unit_scale=True, disable=quiet, desc="verify") as bar:
            run = scrub.run(
                by="verify",
                rate=int(settings.scrub.rate) if rate is None else rate,
                repair=fetcher.fetch_now if repair else None,
                stop=stop,
                progress=bar.update,
                from_start=from_start,
                retry_all=True,
            )
        return run, quarantine.listing()
    finally:
        leases.stop()
        fetcher.stop()


def _report(run: ScrubRun, held: list[Held], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**asdict(run), "held": [asdict(h) for h in held]}, indent=2))
        return
    where = f"after blake3:{run.resumed_from}" if run.resumed_from else "from the first blob"
    state = "pass complete" if run.complete else "stopped; run again to continue"
    click.echo(
        f"checked {run.checked} blobs ({run.checked_bytes} bytes) {where}: {state}\n"
        f"corrupt {run.corrupt}, missing {run.missing}, repaired {run.repaired}"
    )
    for h in held:
        error = f"; last repair: {h.last_error}" if h.last_error else ""
        click.echo(f"quarantined blake3:{h.blake3} {h.reason} ({h.detail}){error}")
    if held:
        click.echo(
            f"{len(held)} blob(s) stay quarantined (never served): add a peer or mirror that "
            "has them, or upload the files again, then run verify again",
            err=True,
        )
