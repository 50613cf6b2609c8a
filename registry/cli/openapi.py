"""`modelyard openapi`: write the OpenAPI document of the node's HTTP API."""

from __future__ import annotations

import json
from pathlib import Path

import click

from registry.settings import Settings


@click.command()
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
