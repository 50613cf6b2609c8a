"""`modelyard peer ...`: the nodes this one pulls from (a running node picks changes up at
once)."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.common import config_option, data_dir_option, opened, settings_from
from registry.domain.access import CONSOLE


@click.group()
def peer() -> None:
    """Manage the peers this node pulls from (a running node picks changes up at once)."""


@peer.command("add")
@click.argument("url")
@click.option("--token", help="A token of the peer that may read what you want to replicate.")
@click.option(
    "--blobs",
    type=click.Choice(["eager", "lazy"]),
    default="eager",
    show_default=True,
    help="eager: copy every blob in the background; lazy: fetch on first request.",
)
@data_dir_option
@config_option
def peer_add(
    url: str, token: str | None, blobs: str, data_dir: Path | None, config: Path | None
) -> None:
    """Start pulling from the node at URL."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        added = runtime.peers.add(CONSOLE, url, token, blobs)
        click.echo(f"{added.id}\t{added.url}\t{added.blobs}")


@peer.command("list")
@data_dir_option
@config_option
def peer_list(data_dir: Path | None, config: Path | None) -> None:
    """List peers with their cursor (live health: GET /v1/peers on the node)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        for p in runtime.peers.all():
            click.echo(
                f"{p.id}\t{p.url}\t{p.blobs}\tnode={p.node_id or '?'}\t"
                f"cursor={p.cursor}/{p.head}\ttoken={'set' if p.token_set else '-'}"
            )


@peer.command("remove")
@click.argument("peer_id")
@data_dir_option
@config_option
def peer_remove(peer_id: str, data_dir: Path | None, config: Path | None) -> None:
    """Stop pulling from a peer (what was replicated stays)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        runtime.peers.remove(CONSOLE, peer_id)
        click.echo(f"removed {peer_id}")
