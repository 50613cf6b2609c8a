"""`modelyard serve`: run a node (its HTTP API and its background jobs) until stopped."""

from __future__ import annotations

from pathlib import Path

import click

from registry import __version__
from registry.cli.common import config_option, configure_logging, data_dir_option, settings_from


@click.command()
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

    from registry.runtime import Runtime

    settings = settings_from(
        config, host=host, port=port, data_dir=data_dir, node_id=node_id, public_url=public_url
    )
    configure_logging(settings.log_level)
    try:
        runtime = Runtime.open(settings)
        node_id = runtime.identity.node_id  # refused here if the data dir is another node's
        new_admin_token = runtime.boot()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if new_admin_token:
        click.echo("First start: created the admin token (shown once, only its hash is kept):")
        click.echo(f"  {new_admin_token}")
    click.echo(
        f"modelyard {__version__} node {node_id} on http://{settings.host}:{settings.port}",
        err=True,
    )
    try:
        uvicorn.run(
            runtime.app(),
            host=settings.host,
            port=settings.port,
            log_config=None,  # uvicorn's records go through our handler (and its redaction)
            log_level="warning",
            loop="uvloop",
            http="httptools",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,  # peers' long-polls would otherwise hold a stop
        )
    finally:
        runtime.close()
