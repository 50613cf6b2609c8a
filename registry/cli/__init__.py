"""The `modelyard` command: one click group, one module per command or group of commands."""

from __future__ import annotations

import click

from registry import __version__
from registry.cli.access import access
from registry.cli.gc import gc
from registry.cli.mirror import mirror
from registry.cli.openapi import openapi
from registry.cli.org import org
from registry.cli.peer import peer
from registry.cli.recover import recover
from registry.cli.serve import serve
from registry.cli.token import token
from registry.cli.transfer import pull, push
from registry.cli.verify import verify
from registry.cli.workflow import workflow


@click.group()
@click.version_option(__version__, prog_name="modelyard")
def cli() -> None:
    """modelyard: a federated, mirror-friendly registry for AI model files."""


for _command in (
    serve,
    token,
    org,
    access,
    peer,
    mirror,
    pull,
    push,
    workflow,
    gc,
    verify,
    recover,
    openapi,
):
    cli.add_command(_command)


def main() -> None:
    cli()
