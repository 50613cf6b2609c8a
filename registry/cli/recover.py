"""`modelyard recover`: bring back to this node what a restore from a backup lost, from a peer
that kept it (see registry.service.recovery)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import httpx

from registry.cli.common import config_option, data_dir_option, fail, opened, settings_from
from registry.client import RegistryClient
from registry.domain.changes import ChangeEntry
from registry.domain.digest import Digest
from registry.domain.errors import UpstreamError
from registry.domain.urls import check_http_url
from registry.storage import Expected

PAGE = 500


@click.command()
@click.option("--from", "source", required=True, help="The URL of a peer that kept them.")
@click.option(
    "--token-env",
    metavar="VAR",
    help="The environment variable holding a token of that peer (admin, or one that may "
    "read the repos).",
)
@click.option("--repo", help="Only this repo (namespace/name).")
@click.option("--dry-run", is_flag=True, help="Show what would come back; change nothing.")
@data_dir_option
@config_option
def recover(
    source: str,
    token_env: str | None,
    repo: str | None,
    dry_run: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Bring back the commits and files this node lost when it was restored from a backup,
    from a peer that followed it before: each lost commit as it was, its files verified by
    BLAKE3, and each branch or tag the lost history had moved as a branch
    `recovered/<name>` at the commit it last pointed to. Current branches stay as they are."""
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise click.UsageError(f"--token-env {token_env}: that variable is not set")
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        source = check_http_url(source, "--from")
        client = RegistryClient(source, token=token)
        try:
            entries = _set_aside(client, runtime.identity.node_id)
            plans = runtime.recovery.plan(entries, repo)
            if not plans:
                click.echo(f"{source} keeps nothing of this node's lost history")
                return
            for plan in plans:
                files = runtime.recovery.missing(plan)
                click.echo(
                    f"{plan.repo}: {len(plan.commits)} commits, {len(files)} files to fetch "
                    f"({sum(files.values())} bytes), refs {sorted(plan.refs) or '-'}"
                )
                for skipped in plan.skipped:
                    click.echo(f"  skipped {skipped}", err=True)
                if dry_run:
                    continue

                def fetch(digest: Digest, size: int) -> None:
                    with client.open_blob(digest, size) as chunks:
                        runtime.uploads.ingest(chunks, Expected(blake3=digest, size=size))

                done = runtime.recovery.recover(plan, fetch)
                click.echo(
                    f"  recovered {done.commits} commits, fetched {done.blobs} files "
                    f"({done.bytes} bytes), branches {done.branches or '-'}"
                )
        except httpx.HTTPError as exc:
            fail(UpstreamError(f"{source} did not answer: {type(exc).__name__}: {exc}"))
        finally:
            client.close()


def _set_aside(client: RegistryClient, origin: str) -> list[ChangeEntry]:
    entries: list[ChangeEntry] = []
    since = 0
    for _ in range(1_000_000):  # bounded: each page moves `since` on
        page = client.set_aside(origin, since, PAGE)
        entries += [ChangeEntry(**e.model_dump()) for e in page.entries]
        if page.last_serial == since:
            return entries
        since = page.last_serial
    return entries
