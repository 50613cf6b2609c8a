"""`modelyard peer ...`: the nodes this one pulls from (a running node picks changes up at
once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import httpx

from registry.cli.common import config_option, data_dir_option, opened, settings_from
from registry.client import RegistryClient, RetryPolicy
from registry.domain.access import CONSOLE
from registry.domain.errors import RegistryError
from registry.domain.names import RepoType
from registry.domain.urls import check_http_url

if TYPE_CHECKING:
    from registry.runtime import Runtime

LISTED_PAGE = 500
LISTED_MAX = 100_000  # repos of a peer looked at for id collisions


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
@click.option(
    "--bootstrap",
    type=click.Choice(["snapshot", "replay", "auto"]),
    default="auto",
    show_default=True,
    help="snapshot: start from the peer's current state, then follow its feed; replay: read "
    "its whole log from serial 0; auto: snapshot when the peer's head serial is above "
    "sync.snapshot_threshold.",
)
@data_dir_option
@config_option
def peer_add(
    url: str,
    token: str | None,
    blobs: str,
    bootstrap: str,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Start pulling from the node at URL. Repos of it whose ids are held here for another
    home are named first: they will be replicated under their qualified ids."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        url = check_http_url(url, "A peer's url")  # before anything is sent there
        _warn_collisions(runtime, url, token)
        added = runtime.peers.add(CONSOLE, url, token, blobs, bootstrap=bootstrap)
        click.echo(f"{added.id}\t{added.url}\t{added.blobs}")


def _warn_collisions(runtime: Runtime, url: str, token: str | None) -> None:
    """What the peer lists (as the token may see it) that collides with a repo held here
    (nothing to ask a peer of when this node holds no repo: a new replica joins at once)."""
    held = {
        r.repo.key: r.home_node for kind in RepoType for r in runtime.repos.visible(CONSOLE, kind)
    }
    if not held:
        return
    try:
        with RegistryClient(url, token=token, retry=RetryPolicy(attempts=1)) as client:
            node = client.health().node_id
            theirs = [(kind, name) for kind in RepoType for name in _listed(client, kind)]
    except (RegistryError, httpx.HTTPError) as exc:
        click.echo(
            f"warning: could not list the repos of {url} to check their ids: {exc}", err=True
        )
        return
    clashes = [
        f"{kind.value}/{name}"
        for kind, name in theirs
        if held.get(f"{kind.value}/{name}") not in (None, node)
    ]
    if clashes:
        click.echo(
            f"warning: {len(clashes)} repos of {url} (node {node}) have ids held here for another "
            f"home; they stay as they are here, and the peer's are replicated as "
            f"namespace.{node}/name: {', '.join(clashes[:20])}",
            err=True,
        )


def _listed(client: RegistryClient, kind: RepoType) -> list[str]:
    names: list[str] = []
    for offset in range(0, LISTED_MAX, LISTED_PAGE):
        page = client.hub("GET", f"/api/{kind.plural}?limit={LISTED_PAGE}&offset={offset}").json()
        names += [str(item["id"]) for item in page]
        if len(page) < LISTED_PAGE:
            break
    return names


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
