"""`modelyard recover`: bring back to this node what a restore from a backup lost, from a peer
that kept it (see registry.service.recovery)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
import httpx

from registry.cli.common import config_option, data_dir_option, fail, opened, settings_from
from registry.client import RegistryClient
from registry.domain.access import CONSOLE
from registry.domain.changes import ChangeEntry
from registry.domain.digest import Digest
from registry.domain.errors import UpstreamError
from registry.domain.manifest import ManifestFile
from registry.domain.names import RepoType
from registry.domain.urls import check_http_url
from registry.service.recovery import Fetch, LostFile, LostHead
from registry.storage import Expected

if TYPE_CHECKING:
    from mirror.s3_target import S3Bucket
    from registry.runtime import Runtime

PAGE = 500
ANCESTORS = 1000  # parents of a lost head looked up in a bucket, at most


@click.command()
@click.option(
    "--from",
    "source",
    required=True,
    help="The URL of a peer that kept them, or an s3://bucket/prefix mirror of this node.",
)
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
        if source.startswith("s3://"):
            _from_bucket(runtime, source, repo, dry_run)
            return
        source = check_http_url(source, "--from")
        client = RegistryClient(source, token=token)
        try:
            entries = _set_aside(client, runtime.identity.node_id)
            plans = runtime.recovery.plan(entries, repo)
            if not plans:
                click.echo(f"{source} keeps nothing of this node's lost history")
                return
            for plan in plans:
                files = runtime.recovery.missing(plan.files)
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


def _from_bucket(runtime: Runtime, url: str, repo: str | None, dry_run: bool) -> None:
    """From a mirror bucket: each branch or tag whose commit this node no longer has comes back
    as a new commit with that commit's files (the bucket keeps no author or message)."""
    from mirror.s3_target import S3Bucket  # boto3 only when a bucket is used

    bucket = S3Bucket(url)
    node = runtime.identity.node_id
    homed = [
        r
        for kind in RepoType
        for r in runtime.repos.visible(CONSOLE, kind)
        if r.home_node == node and repo in (None, r.repo.full_name)
    ]
    lost = 0
    for record in homed:
        kind, name = record.repo.type.value, record.repo.full_name
        refs = bucket.refs(kind, name)
        known = runtime.recovery.known(refs.values())
        for ref, commit in sorted(refs.items()):
            if commit in known:
                continue
            lost += 1
            manifest = bucket.manifest(kind, name, commit)
            head = LostHead(
                record.repo.key,
                ref,
                commit,
                _ancestors(bucket, kind, name, manifest.parent, runtime),
                manifest.title,
                tuple(
                    LostFile(f.path, f.size, Digest(f.blake3)) for f in manifest.files if f.blake3
                ),
            )
            click.echo(f"{record.repo.key}: {ref} at {commit} ({len(head.files)} files) lost here")
            if dry_run:
                continue
            done = runtime.recovery.restore_head(head, url, _bucket_fetch(runtime, bucket, head))
            shown = ", ".join(done.branches) or "recovered before"
            click.echo(f"  branch {shown}; fetched {done.blobs} files ({done.bytes} bytes)")
    if not lost:
        click.echo(f"{url} holds nothing this node lost")


def _bucket_fetch(runtime: Runtime, bucket: S3Bucket, head: LostHead) -> Fetch:
    files = {f.blake3: f for f in head.files}

    def fetch(digest: Digest, size: int) -> None:
        file = files[digest]
        chunks = bucket.open(ManifestFile(file.path, file.size, digest.hex, None))
        runtime.uploads.ingest(chunks, Expected(blake3=digest, size=size))

    return fetch


def _ancestors(
    bucket: S3Bucket, kind: str, name: str, parent: str | None, runtime: Runtime
) -> tuple[str, ...]:
    """The parent chain of a lost commit, up to the first commit this node has."""
    chain: list[str] = []
    while parent is not None and len(chain) < ANCESTORS:
        chain.append(parent)
        if runtime.recovery.known([parent]):
            break
        parent = bucket.manifest(kind, name, parent).parent
    return tuple(chain)
