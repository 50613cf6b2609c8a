"""`modelyard verify`: re-hash a node's stored blobs, hold bad ones and repair them, on the
node's own database and blob store (the settings `modelyard serve` reads), running or not."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from pydantic import ByteSize, TypeAdapter, ValidationError
from tqdm import tqdm

from registry.cli.common import (
    config_option,
    configure_logging,
    data_dir_option,
    opened,
    settings_from,
)

if TYPE_CHECKING:
    from registry.metadata.quarantine import Held
    from registry.runtime import Runtime
    from registry.service.scrub import ScrubRun

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
    with opened(settings, process="verify") as runtime, _stop_on_signals() as stop:
        run, held = _verify(runtime, rate, repair, from_start, as_json, stop)
    _report(run, held, as_json)
    if not run.complete and stop.is_set():
        sys.exit(EXIT_INTERRUPTED)
    if run.unrepaired:
        sys.exit(EXIT_HELD)


def _verify(
    runtime: Runtime,
    rate: int | None,
    repair: bool,
    from_start: bool,
    quiet: bool,
    stop: threading.Event,
) -> tuple[ScrubRun, list[Held]]:
    scrub, leases = runtime.scrub, runtime.leases
    _, total = scrub.remaining(from_start)
    leases.start()
    try:
        with tqdm(total=total, unit="B", unit_scale=True, disable=quiet, desc="verify") as bar:
            run = scrub.run(
                by="verify",
                rate=int(runtime.settings.scrub.rate) if rate is None else rate,
                repair=runtime.fetcher.fetch_now if repair else None,
                stop=stop,
                progress=bar.update,
                from_start=from_start,
                retry_all=True,
            )
        return run, runtime.quarantine.listing()
    finally:
        leases.stop()


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
