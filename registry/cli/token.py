"""`modelyard token ...`: access tokens (works while the node runs)."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.common import config_option, data_dir_option, opened, settings_from


@click.group()
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
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        click.echo(runtime.auth.create_token(user, write=write, label=label))
