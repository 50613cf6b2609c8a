"""`modelyard access ...`: the access requests of a gated repo, over HTTP with a token of
one of its writers (the Hub routes `HfApi.list_*_access_requests` and `accept_access_request`
call)."""

from __future__ import annotations

from urllib.parse import quote

import click
import httpx

from registry.cli.common import DEFAULT_NODE_URL, fail, given_or_env_token
from registry.client.client import RegistryClient
from registry.domain.errors import RegistryError
from registry.wire import AccessRequestOut

STATUSES = ("pending", "accepted", "rejected")


node_option = click.option(
    "--node", default=DEFAULT_NODE_URL, show_default=True, help="The node's URL."
)
token_option = click.option("--token", help="A token of the repo's owner [env MODELYARD_TOKEN].")
type_option = click.option(
    "--type", "repo_type", type=click.Choice(["model", "dataset"]), default="model"
)


def _call(node: str, token: str | None, method: str, path: str, body: object = None) -> object:
    try:
        with RegistryClient(node, token=given_or_env_token(token)) as client:
            return client.hub(method, path, json=body).json()
    except RegistryError as exc:
        fail(exc)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{node}: {exc}") from None
    return None


def _base(repo_type: str, repo: str) -> str:
    return f"/api/{repo_type}s/{quote(repo)}/user-access-request"


@click.group()
def access() -> None:
    """Access requests of gated repos (see `HfApi.update_repo_settings(gated=...)`)."""


@access.command("list")
@click.argument("repo", metavar="NAMESPACE/NAME")
@click.option("--status", type=click.Choice(STATUSES), help="Only these (default: all).")
@node_option
@token_option
@type_option
def access_list(
    repo: str, status: str | None, node: str, token: str | None, repo_type: str
) -> None:
    """List a repo's access requests, tab-separated: user, status, when."""
    click.echo("user\tstatus\tsince")
    for wanted in [status] if status else STATUSES:
        answer = _call(node, token, "GET", f"{_base(repo_type, repo)}/{wanted}")
        for item in answer if isinstance(answer, list) else []:
            found = AccessRequestOut.model_validate(item)
            click.echo(f"{found.user.user}\t{found.status}\t{found.timestamp}")


def _handle(repo: str, user: str, status: str, node: str, token: str | None, kind: str) -> None:
    body = {"user": user, "status": status}
    _call(node, token, "POST", f"{_base(kind, repo)}/handle", body)
    click.echo(f"{status}\t{user}\t{repo}")


@access.command("accept")
@click.argument("repo", metavar="NAMESPACE/NAME")
@click.argument("user")
@node_option
@token_option
@type_option
def access_accept(repo: str, user: str, node: str, token: str | None, repo_type: str) -> None:
    """Accept USER's request: they may download the repo's files from now on."""
    _handle(repo, user, "accepted", node, token, repo_type)


@access.command("reject")
@click.argument("repo", metavar="NAMESPACE/NAME")
@click.argument("user")
@node_option
@token_option
@type_option
def access_reject(repo: str, user: str, node: str, token: str | None, repo_type: str) -> None:
    """Reject USER's request (or take back an accepted one)."""
    _handle(repo, user, "rejected", node, token, repo_type)
