"""`modelyard token ...`: access tokens (works while the node runs; a running node sees a
revocation made here within its `token_recheck_interval`)."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.common import config_option, data_dir_option, opened, settings_from
from registry.domain.access import CONSOLE
from registry.domain.clock import now_ms
from registry.domain.errors import InvalidError
from registry.domain.tokens import TokenInfo, parse_duration
from registry.wire import iso_ms

LIST_COLUMNS = ("id", "label", "user", "rights", "created", "expires", "last_used")


@click.group()
def token() -> None:
    """Manage access tokens."""


def _expiry(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """--expires as the ms it stops working at, checked before the node is opened."""
    if value is None:
        return None
    try:
        return now_ms() + parse_duration(value) * 1000
    except InvalidError as exc:
        raise click.BadParameter(exc.message) from None


@token.command("create")
@click.option("--user", required=True, help="The user the token acts as (created if new).")
@click.option("--write", is_flag=True, help="Allow writes to the user's namespace.")
@click.option("--label", default="cli", show_default=True, help="A name to recognise it by.")
@click.option(
    "--expires",
    "expires_ms",
    callback=_expiry,
    metavar="DURATION",
    help="Stop working after this long: 90m, 12h, 30d (s, m, h, d, w). Default: never.",
)
@data_dir_option
@config_option
def token_create(
    user: str,
    write: bool,
    label: str,
    expires_ms: int | None,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Print a new token on stdout (only its hash is stored)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        token = runtime.auth.create_token(user, write=write, label=label, expires_ms=expires_ms)
        click.echo(token)


@token.command("list")
@click.option("--user", help="Only this user's tokens.")
@data_dir_option
@config_option
def token_list(user: str | None, data_dir: Path | None, config: Path | None) -> None:
    """List the tokens not revoked, tab-separated under a header (never a token or its hash)."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        tokens = runtime.auth.tokens(CONSOLE, user)
    now = now_ms()
    click.echo("\t".join(LIST_COLUMNS))
    for info in tokens:
        click.echo("\t".join(_row(info, now)))


def _row(info: TokenInfo, now: int) -> list[str]:
    expires = "never"
    if info.expires_ms is not None:
        expires = iso_ms(info.expires_ms) + (" (expired)" if info.expired(now) else "")
    last_used = iso_ms(info.last_used_ms) if info.last_used_ms is not None else "never"
    return [
        str(info.id),
        info.label,
        info.user,
        info.rights,
        iso_ms(info.created_ms),
        expires,
        last_used,
    ]


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@data_dir_option
@config_option
def token_revoke(token_id: int, data_dir: Path | None, config: Path | None) -> None:
    """Revoke the token ID (see `token list`): it is answered 401 TokenRevoked from then on."""
    with opened(settings_from(config, data_dir=data_dir)) as runtime:
        info = runtime.auth.revoke(CONSOLE, token_id)
    click.echo(f"revoked {info.id}\t{info.label}\t{info.user}")
