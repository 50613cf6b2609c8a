"""The `modelyard` command: the composition root for console use."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry import __version__
from registry.cli_common import (
    config_option,
    configure_logging,
    data_dir_option,
    fail,
    settings_from,
)
from registry.cli_gc import gc
from registry.cli_mirrors import mirror
from registry.cli_transfer import pull, push
from registry.cli_verify import verify
from registry.domain.errors import (
    RegistryError,
)
from registry.settings import Settings

if TYPE_CHECKING:
    from registry.service.peers import PeerService

logger = logging.getLogger(__name__)


@click.group()
@click.version_option(__version__, prog_name="modelyard")
def cli() -> None:
    """modelyard: a federated, mirror-friendly registry for AI model files."""


@cli.command()
@click.option("--host", help="Address to bind [env MODELYARD_HOST; 127.0.0.1]")
@click.option("--port", type=int, help="Port [env MODELYARD_PORT; 8000]")
@data_dir_option
@config_option
@click.option("--node-id", help="This node's id (fixed at first start) [env MODELYARD_NODE_ID]")
@click.option("--public-url", help="Base URL clients use [env MODELYARD_PUBLIC_URL]")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    config: Path | None,
    node_id: str | None,
    public_url: str | None,
) -> None:
    """Start a node on SQLite + a local blob directory in the data dir."""
    import uvicorn

    from registry.api.app import create_app
    from registry.node import Node

    settings = settings_from(
        config, host=host, port=port, data_dir=data_dir, node_id=node_id, public_url=public_url
    )
    configure_logging(settings.log_level)
    try:
        node = Node.open(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if node.new_admin_token:
        click.echo("First start: created the admin token (shown once, only its hash is kept):")
        click.echo(f"  {node.new_admin_token}")
    click.echo(
        f"modelyard {__version__} node {node.identity.node_id} on "
        f"http://{settings.host}:{settings.port}",
        err=True,
    )
    uvicorn.run(
        create_app(settings, node=node),
        host=settings.host,
        port=settings.port,
        log_config=None,  # uvicorn's records go through our handler (and its redaction)
        log_level="warning",
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,  # peers' long-polls would otherwise hold a stop
    )
    node.close()


@cli.group()
def token() -> None:
    """Manage access tokens."""


@token.command("create")
@click.option("--user", required=True, help="The user the token acts as (created if new).")
@click.option("--write", is_flag=True, help="Allow writes to the user's namespace.")
@click.option("--label", default="cli", show_default=True, help="A name to recognise it by.")
@data_dir_option
@config_option
def token_create(
    user: str, write: bool, label: str, data_dir: Path | None, config: Path | None
) -> None:
    """Print a new token on stdout (only its hash is stored)."""
    from registry.metadata.db import Database
    from registry.service.auth import AuthService

    settings = settings_from(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        click.echo(AuthService(db).create_token(user, write=write, label=label))
    except RegistryError as exc:
        fail(exc)
    finally:
        db.dispose()


@contextmanager
def _peer_service(data_dir: Path | None, config: Path | None) -> Iterator[PeerService]:
    from registry.metadata.db import Database
    from registry.service.credentials import credential_box
    from registry.service.peers import PeerService, Thresholds

    settings = settings_from(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        yield PeerService(db, Thresholds(), credential_box(settings))
    except RegistryError as exc:
        fail(exc)
    finally:
        db.dispose()


@cli.group()
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
    with _peer_service(data_dir, config) as peers:
        added = peers.add(url, token, blobs)
        click.echo(f"{added.id}\t{added.url}\t{added.blobs}")


@peer.command("list")
@data_dir_option
@config_option
def peer_list(data_dir: Path | None, config: Path | None) -> None:
    """List peers with their cursor (live health: GET /v1/peers on the node)."""
    with _peer_service(data_dir, config) as peers:
        for p in peers.all():
            click.echo(
                f"{p.id}\t{p.url}\t{p.blobs}\tnode={p.node_id or '?'}\t"
                f"cursor={p.cursor}/{p.head}\ttoken={'set' if p.token else '-'}"
            )


@peer.command("remove")
@click.argument("peer_id")
@data_dir_option
@config_option
def peer_remove(peer_id: str, data_dir: Path | None, config: Path | None) -> None:
    """Stop pulling from a peer (what was replicated stays)."""
    with _peer_service(data_dir, config) as peers:
        peers.remove(peer_id)
        click.echo(f"removed {peer_id}")


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("openapi/openapi.json"),
    show_default=True,
)
def openapi(out: Path) -> None:
    """Write the OpenAPI document of the node's HTTP API."""
    from registry.api.app import create_app

    document = create_app(Settings()).openapi()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {out}", err=True)


cli.add_command(gc)
cli.add_command(mirror)
cli.add_command(pull)
cli.add_command(push)
cli.add_command(verify)


def main() -> None:
    cli()
