"""`modelyard org ...`: organisations and their members, on the node's database (works while
the node runs; a running node sees a membership change made here within its
`token_recheck_interval`)."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.common import config_option, data_dir_option, opened, settings_from
from registry.domain.access import CONSOLE, ROLES
from registry.service.orgs import OrgInfo


@click.group()
def org() -> None:
    """Manage organisations (shared namespaces) and their members."""


def _show(info: OrgInfo) -> None:
    click.echo(f"org\t{info.name}")
    for member in info.members:
        click.echo(f"{member.role}\t{member.user}")


@org.command("create")
@click.argument("name")
@data_dir_option
@config_option
def org_create(name: str, data_dir: Path | None, config: Path | None) -> None:
    """Create the org NAME (no user may have that name)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        runtime.orgs.create(CONSOLE, name)
    click.echo(f"created org {name}")


@org.command("add")
@click.argument("name")
@click.argument("user")
@click.option("--role", type=click.Choice(ROLES), default="read", show_default=True)
@data_dir_option
@config_option
def org_add(name: str, user: str, role: str, data_dir: Path | None, config: Path | None) -> None:
    """Make USER a member of org NAME with ROLE (or change their role)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        _show(runtime.orgs.set_member(CONSOLE, name, user, role))


@org.command("remove")
@click.argument("name")
@click.argument("user")
@data_dir_option
@config_option
def org_remove(name: str, user: str, data_dir: Path | None, config: Path | None) -> None:
    """Take USER out of org NAME."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        _show(runtime.orgs.remove_member(CONSOLE, name, user))


@org.command("list")
@data_dir_option
@config_option
def org_list(data_dir: Path | None, config: Path | None) -> None:
    """Every org's name, one a line."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        names = runtime.orgs.names(CONSOLE)
    for name in names:
        click.echo(name)


@org.command("show")
@click.argument("name")
@data_dir_option
@config_option
def org_show(name: str, data_dir: Path | None, config: Path | None) -> None:
    """The org NAME and its members, `role<TAB>user` a line."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        _show(runtime.orgs.get(CONSOLE, name))
