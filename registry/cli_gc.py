"""`modelyard gc`: free the blobs no commit references (a dry run unless --delete)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from registry.cli_common import (
    config_option,
    configure_logging,
    data_dir_option,
    fail,
    settings_from,
)
from registry.domain.errors import RegistryError
from registry.service.gc import GcReport

SHORT_GRACE = 3600.0  # below this, --delete warns: clients may upload and commit slower


class _Bars:
    """One progress bar per phase on stderr (tqdm hides them when stderr is not a terminal)."""

    NAMES = {"records": "blob records", "store": "stored blobs", "delete": "deleting"}

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}  # tqdm bars

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            bar = tqdm(total=total, desc=self.NAMES.get(phase, phase), disable=None, leave=False)
            self._bars[phase] = bar
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@click.command()
@click.option(
    "--delete",
    is_flag=True,
    help="Delete the garbage; without it gc only reports what it would free (a dry run).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    help="Seconds an unreferenced blob or upload leftover is kept after an upload last stored "
    "or reused it [env MODELYARD_GC__GRACE; 86400].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--verbose", "-v", is_flag=True, help="List every blob (digest, size, reason).")
@data_dir_option
@config_option
def gc(
    delete: bool,
    grace: float | None,
    as_json: bool,
    verbose: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Free the blobs no commit of any repo references (deleted repos, uploads never committed)
    once their grace period has passed, and stale upload leftovers. Safe while the node serves.

    Exit status: 0 done (whatever was found), 2 bad usage or settings, 6 the blob store could
    not be reached, 1 any other failure.
    """
    from registry.metadata.db import Database
    from registry.service.gc import GarbageCollector
    from registry.storage.build import build_blob_store

    settings = settings_from(config, data_dir=data_dir)
    configure_logging(settings.log_level)
    if settings.database_url is None and not (settings.data_dir / "modelyard.db").exists():
        raise click.UsageError(f"no node in {settings.data_dir} (see --data-dir, --config)")
    grace = settings.gc.grace if grace is None else grace
    if delete and grace < SHORT_GRACE:
        click.echo(
            f"note: grace {grace:g} s: uploads not committed for that long are freed; their "
            "commits then fail (MissingObject) until the files are uploaded again",
            err=True,
        )
    db = Database(settings.effective_database_url)
    bars = _Bars()
    try:
        report = GarbageCollector(db, build_blob_store(settings), grace).run(
            delete=delete, progress=bars
        )
    except RegistryError as exc:
        bars.close()
        fail(exc)
        return
    finally:
        db.dispose()
    bars.close()
    click.echo(_as_json(report) if as_json else _as_text(report, verbose))


def _as_json(report: GcReport) -> str:
    return json.dumps(
        {
            "deleted": report.deleted,
            "grace": report.grace,
            "blobs": len(report.garbage),
            "bytes": report.bytes,
            "uploads": report.uploads,
            "kept_recent": report.kept_recent,
            "kept_for_mirrors": report.kept_for_mirrors,
            "changed": report.changed,
            "items": [
                {"blake3": g.digest.hex, "size": g.size, "reason": g.reason} for g in report.garbage
            ],
        },
        indent=2,
    )


def _as_text(report: GcReport, verbose: bool) -> str:
    verb = "freed" if report.deleted else "would free"
    lines = [f"{g.digest}\t{g.size}\t{g.reason}" for g in report.garbage] if verbose else []
    lines.append(
        f"{verb} {len(report.garbage)} blobs, {_human(report.bytes)} ({report.bytes} bytes), "
        f"and {report.uploads} stale upload leftovers"
    )
    lines.append(
        f"kept unreferenced: {report.kept_recent} wanted within the grace period "
        f"({report.grace:g} s), {report.kept_for_mirrors} still to push to a mirror"
        + (f", {report.changed} wanted again while gc ran" if report.changed else "")
    )
    if not report.deleted:
        lines.append("dry run: nothing was deleted (run with --delete to free them)")
    return "\n".join(lines)


def _human(size: int) -> str:
    value, unit = float(size), 0
    while value >= 1024 and unit < 4:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {'KMGT'[unit - 1]}iB"
