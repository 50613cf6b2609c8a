"""`modelyard mirror ...`: configure where this node pushes (a running node picks changes up
within a second; pushing happens in the node)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry.cli.common import config_option, data_dir_option, opened, settings_from
from registry.domain.access import CONSOLE

if TYPE_CHECKING:
    from registry.service.mirrors import MirrorView


@click.group()
def mirror() -> None:
    """Manage the mirrors this node pushes every new commit to."""


@mirror.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["hf", "s3", "node"]), required=True)
@click.option(
    "--url",
    help="s3://bucket/prefix; the Hub endpoint (hf; default HF_ENDPOINT or the public Hub); "
    "or the node's URL.",
)
@click.option(
    "--token",
    help="hf: default HF_TOKEN / your saved login; node: a write token of that node "
    "[env MODELYARD_TOKEN]; s3 uses boto3's credential chain.",
)
@click.option("--repos", default="*", show_default=True, help="Glob over namespace/name.")
@data_dir_option
@config_option
def mirror_add(
    name: str,
    kind: str,
    url: str | None,
    token: str | None,
    repos: str,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Push the repos matching --repos (what they hold now, then every change) to NAME."""
    if kind == "node" and token is None:
        given = settings_from(config, data_dir=data_dir).token
        token = given.get_secret_value() if given else None
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        view = runtime.mirrors.add(CONSOLE, name, kind, url, token, repos)
        click.echo(f"{_where(view)}\tbacklog={view.backlog}")


def _where(view: MirrorView) -> str:
    return f"{view.name}\t{view.kind}\t{view.url or '(Hub default)'}"


def _line(view: MirrorView) -> str:
    oldest = view.oldest_pending_ms
    age = f"{time.time() - oldest / 1000:.0f}s" if oldest else "-"
    last = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(view.last_success_ms / 1000))
        if view.last_success_ms
        else "never"
    )
    return (
        f"{_where(view)}\trepos={view.repos}\t"
        f"state={view.state}\tbacklog={view.backlog}\toldest={age}\tpushed={view.pushed}\t"
        f"last_success={last}\tlast_error={view.last_error or '-'}"
    )


@mirror.command("list")
@data_dir_option
@config_option
def mirror_list(data_dir: Path | None, config: Path | None) -> None:
    """List mirrors (tokens are never shown)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        for view in runtime.mirrors.views():
            click.echo(f"{_where(view)}\trepos={view.repos}")


@mirror.command("status")
@data_dir_option
@config_option
def mirror_status(data_dir: Path | None, config: Path | None) -> None:
    """Each mirror's backlog, last success and last error, and refs it rolled back."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        for view in runtime.mirrors.views():
            click.echo(_line(view))
            for r in view.recent_rollbacks:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at_ms / 1000))
                click.echo(
                    f"  rolled back {r.repo} {r.ref} past lost commit {r.lost_commit} at {when}; "
                    f"kept as {r.kept_as}"
                )


@mirror.command("remove")
@click.argument("name")
@data_dir_option
@config_option
def mirror_remove(name: str, data_dir: Path | None, config: Path | None) -> None:
    """Stop pushing to NAME (what was pushed stays there)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        runtime.mirrors.remove(CONSOLE, name)
        click.echo(f"removed {name}")
