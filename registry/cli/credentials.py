"""Tokens for client commands, kept in a file keyed by URL (as pip's and twine's are), so one
`modelyard push` reaches targets that need different tokens and no token is ever in argv.

The file is TOML, one table per URL prefix; the longest prefix that matches a URL at a path
boundary gives its token:

    ["http://node-b:8000"]
    token = "..."

It is `~/.config/modelyard/credentials.toml` unless `--credentials` or
`MODELYARD_CREDENTIALS` names another. Tokens are never printed.
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import click

FILE_NAME = "credentials.toml"


def default_path() -> Path:
    return Path(click.get_app_dir("modelyard")) / FILE_NAME


@dataclass(frozen=True)
class Credentials:
    path: Path
    tokens: dict[str, str] = field(default_factory=dict)  # URL prefix (no trailing /) -> token

    def token_for(self, url: str) -> str | None:
        """The token of the longest prefix that `url` starts with, at a path boundary."""
        url = url.rstrip("/")
        matching = [p for p in self.tokens if url == p or url.startswith(p + "/")]
        return self.tokens[max(matching, key=len)] if matching else None


def load_credentials(path: Path | None) -> Credentials:
    """The credentials file: `path` (which must exist), else the default one if present.

    Raises:
        click.UsageError: the file is missing (when named), unreadable or not as described.
    """
    named = path is not None
    path = path or default_path()
    if not path.exists():
        if named:
            raise click.UsageError(f"credentials file {path} does not exist")
        return Credentials(path)
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        click.echo(
            f"warning: {path} is readable by group or others; run chmod 600 {path}", err=True
        )
    try:
        parsed = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"credentials file {path} cannot be read: {exc}") from None
    tokens: dict[str, str] = {}
    for url, entry in parsed.items():
        token = entry.get("token") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not token:
            raise click.UsageError(f'credentials file {path}: ["{url}"] needs a token = "..." line')
        tokens[url.rstrip("/")] = token
    return Credentials(path, tokens)
