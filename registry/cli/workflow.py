"""`modelyard workflow pull`: every model a ComfyUI workflow needs, into ComfyUI's layout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry.cli.common import fail, given_or_env_token
from registry.cli.transfer import DEFAULT_SOURCE, Bars
from registry.domain.errors import RegistryError

if TYPE_CHECKING:
    from mirror.workflow import Row


@click.group()
def workflow() -> None:
    """ComfyUI workflows: fetch the models they load."""


@workflow.command()
@click.argument("spec", metavar="WORKFLOW")
@click.option(
    "--comfyui",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    help="ComfyUI's directory: models land in DIR/models/<folder>/ [default: .].",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="http(s)://node, s3://bucket/prefix or hf:org/name, tried in order (repeat the "
    f"option); the first live node resolves the workflow [default {DEFAULT_SOURCE}].",
)
@click.option("--token", help="A token for node sources [env MODELYARD_TOKEN].")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option(
    "--refuse-unsafe",
    is_flag=True,
    help="Do not download files a node's scanner flagged (unsafe, or could not be scanned).",
)
def pull(
    spec: str,
    comfyui: Path,
    sources: tuple[str, ...],
    token: str | None,
    dry_run: bool,
    refuse_unsafe: bool,
) -> None:
    """Download every model WORKFLOW loads into ComfyUI's layout (DIR/models/checkpoints,
    loras, vae, controlnet, upscale_models, text_encoders, embeddings, ...), each verified
    by BLAKE3 and taken from whichever source has it; files already there with the right
    bytes are skipped. WORKFLOW is a workflow JSON file (UI or API format) or
    REPO[@REV]:PATH on the sources.

    Prints a table (folder, filename, status, source, size) and exits 1 if any model is
    missing, ambiguous, refused or failed to download."""
    from mirror import Downloader
    from mirror.workflow import pull_workflow, read_workflow_source

    bars = Bars()
    try:
        with Downloader(
            sources or [DEFAULT_SOURCE], token=given_or_env_token(token), progress=bars
        ) as downloader:
            body = read_workflow_source(spec, downloader)
            rows = pull_workflow(
                body, comfyui, downloader, dry_run=dry_run, refuse_unsafe=refuse_unsafe
            )
    except RegistryError as exc:
        bars.close()
        fail(exc)
        return
    bars.close()
    _print_table(rows)
    incomplete = [r for r in rows if r.status not in ("downloaded", "present", "planned")]
    if incomplete:
        names = ", ".join(f"{r.folder}/{r.filename} ({r.status})" for r in incomplete)
        click.echo(f"error: {len(incomplete)} of {len(rows)} models not pulled: {names}", err=True)
        sys.exit(1)


def _print_table(rows: list[Row]) -> None:
    header = ("folder", "filename", "status", "source", "size")
    lines = [header] + [
        (r.folder, r.filename, r.status, r.source or "-", _size(r.size)) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for row in rows:
        if row.detail:
            click.echo(f"{row.folder}/{row.filename}: {row.detail}", err=True)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
