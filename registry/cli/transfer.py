"""`modelyard pull` and `modelyard push`: the client side, no node of your own needed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tqdm import tqdm

from registry.cli.common import DEFAULT_NODE_URL, fail, given_or_env_token
from registry.cli.credentials import Credentials, load_credentials
from registry.domain.errors import AllSourcesFailedError, RegistryError

if TYPE_CHECKING:
    from mirror import DownloadResult

DEFAULT_SOURCE = DEFAULT_NODE_URL
EXIT_REFUSED_UNSAFE = 7  # `pull --refuse-unsafe` left flagged files out (2-6: common.EXIT_CODES)


class Bars:
    """One progress bar per file, fed from the downloader's threads."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}  # tqdm bars
        self._lock = threading.Lock()

    def __call__(self, progress: object) -> None:
        from mirror import Progress

        assert isinstance(progress, Progress)
        with self._lock:
            bar = self._bars.get(progress.path)
            if bar is None:
                bar = tqdm(total=progress.total, unit="B", unit_scale=True, desc=progress.path)
                self._bars[progress.path] = bar
            bar.update(progress.done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@click.command()
@click.argument("spec", metavar="REPO[@REV]")
@click.option("--to", "to", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="http(s)://node, s3://bucket/prefix or hf:org/name, tried in order (repeat the "
    f"option) [default {DEFAULT_SOURCE}].",
)
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--type", "repo_type", type=click.Choice(["model", "dataset"]), default="model")
@click.option("--token", help="A token for node sources [env MODELYARD_TOKEN].")
@click.option(
    "--refuse-unsafe",
    is_flag=True,
    help="Skip files a node's scanner flagged (unsafe, or could not be scanned), download the "
    f"rest, and exit {EXIT_REFUSED_UNSAFE}.",
)
def pull(
    spec: str,
    to: Path,
    sources: tuple[str, ...],
    include: tuple[str, ...],
    repo_type: str,
    token: str | None,
    refuse_unsafe: bool,
) -> None:
    """Download REPO at REV (default main) into --to from whichever source works, verifying
    every file; an interrupted pull resumes where it stopped.

    Files a node's scanner flagged are named on stderr with a warning; S3 and Hub sources
    carry no verdicts, so with no node among the sources they are reported as not known.
    With --refuse-unsafe the flagged files are not downloaded and the exit status is
    7 (after everything else was pulled)."""
    from mirror import Downloader

    repo, _, revision = spec.partition("@")
    bars = Bars()
    try:
        with Downloader(
            sources or [DEFAULT_SOURCE], token=given_or_env_token(token), progress=bars
        ) as d:
            result = d.download_repo(
                repo,
                to,
                revision=revision or "main",
                repo_type=repo_type,
                allow=include,
                refuse_unsafe=refuse_unsafe,
            )
    except AllSourcesFailedError as exc:
        bars.close()
        click.echo(f"error: {exc.code}: {exc.message}", err=True)
        sys.exit(6)
    except RegistryError as exc:
        bars.close()
        fail(exc)
    bars.close()
    _report_scan(result)
    click.echo(
        f"pulled {len(result.files)} files of {repo}@{result.commit} (manifest from "
        f"{result.manifest_source}) into {to}"
    )
    if result.refused:
        click.echo(
            f"error: refused {len(result.refused)} flagged file(s), not downloaded: "
            f"{', '.join(result.refused)}",
            err=True,
        )
        sys.exit(EXIT_REFUSED_UNSAFE)


def _report_scan(result: DownloadResult) -> None:
    """One stderr line per flagged file, and a note when the verdicts are unknown or partial."""
    scan = result.scan
    if scan is None:
        click.echo("note: scan verdicts not known (no node source gave them)", err=True)
        return
    for path, flagged in result.flagged.items():
        findings = "; ".join(flagged.findings) or "no details"
        what = "unsafe" if flagged.status == "unsafe" else f"{flagged.status} (scan failed)"
        click.echo(f"warning: {path} is flagged {what} by {scan.source}: {findings}", err=True)
    if not scan.done:
        click.echo(
            f"note: {scan.source} has not finished scanning; files still pending are not flagged",
            err=True,
        )


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("repo", metavar="NAMESPACE/NAME")
@click.option(
    "--to",
    "targets",
    multiple=True,
    required=True,
    help="http(s)://node, s3://bucket/prefix or hf:org/name (repeat to push to several at once).",
)
@click.option("-m", "--message", default="Upload with modelyard push", show_default=True)
@click.option("--type", "repo_type", type=click.Choice(["model", "dataset"]), default="model")
@click.option(
    "--token",
    help="A write token for node targets without one in the credentials file "
    "[env MODELYARD_TOKEN]; prefer the file (a token in argv shows in `ps`).",
)
@click.option(
    "--credentials",
    "credentials_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="MODELYARD_CREDENTIALS",
    help="Tokens by URL (TOML) [env MODELYARD_CREDENTIALS; ~/.config/modelyard/credentials.toml].",
)
def push(
    folder: Path,
    repo: str,
    targets: tuple[str, ...],
    message: str,
    repo_type: str,
    token: str | None,
    credentials_path: Path | None,
) -> None:
    """Push FOLDER as REPO to every --to target concurrently; report each one's result (the
    commit it made) and exit non-zero if any failed.

    Each node target takes the token of its URL in the credentials file, else --token or
    MODELYARD_TOKEN. Hub targets (at HF_ENDPOINT) take the token of the endpoint's URL in the
    file, else HF_TOKEN or the saved login."""
    from mirror.push import push_folder, snapshot_folder

    tokens = _target_tokens(targets, load_credentials(credentials_path), given_or_env_token(token))
    try:
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        with tqdm(total=total, unit="B", unit_scale=True, desc="hashing") as bar:
            commit = snapshot_folder(
                folder, repo, message=message, repo_type=repo_type, on_bytes=bar.update
            )
        results = push_folder(commit, targets, tokens)
    except RegistryError as exc:
        fail(exc)
        return
    for result in results:
        click.echo(f"{'ok' if result.ok else 'FAILED'}\t{result.target}\t{result.detail}")
    failed = [r for r in results if not r.ok]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} targets failed", err=True)
        sys.exit(6)


def _target_tokens(
    targets: tuple[str, ...], credentials: Credentials, fallback: str | None
) -> dict[str, str | None]:
    """Each target's token; a node target with none is refused before anything is pushed."""
    tokens: dict[str, str | None] = {}
    for spec in targets:
        if spec.startswith("hf:"):
            from huggingface_hub import constants  # reads HF_ENDPOINT

            tokens[spec] = credentials.token_for(constants.ENDPOINT)
        elif spec.startswith(("http://", "https://")):
            tokens[spec] = credentials.token_for(spec) or fallback
            if tokens[spec] is None:
                raise click.UsageError(
                    f'no credential for {spec}: add a ["{spec.rstrip("/")}"] table with '
                    f'token = "..." to {credentials.path} (or set MODELYARD_TOKEN)'
                )
    return tokens
