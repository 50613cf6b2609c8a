"""What every `modelyard` command shares: settings, logging, and errors as exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry.domain.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    RegistryError,
    UnauthorizedError,
    UnprocessableError,
    UpstreamError,
)
from registry.domain.redaction import redact
from registry.settings import Settings, load_settings

if TYPE_CHECKING:
    from registry.runtime import Runtime

EXIT_CODES = [
    (InvalidError, 2),
    (UnprocessableError, 2),
    (NotFoundError, 3),
    (ConflictError, 4),
    (UnauthorizedError, 5),
    (ForbiddenError, 5),
    (UpstreamError, 6),
]


class RedactingFilter(logging.Filter):
    """Scrubs credentials out of each record a handler writes, traceback included: a safety
    net under third-party debug logs (httpx, botocore) and errors quoting what they were sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # a malformed record: logging reports it as it would have
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def configure_logging(level: str) -> None:
    """One stderr handler on the root logger, every record passed through RedactingFilter."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    # httpx logs every request it sends at INFO: a line per peer probe and long-poll every few
    # seconds. Our own lines say when a peer or mirror changes state; DEBUG still shows them.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def fail(exc: RegistryError) -> None:
    click.echo(f"error: {exc.code}: {exc.message}", err=True)
    sys.exit(next((code for family, code in EXIT_CODES if isinstance(exc, family)), 1))


def settings_from(config: Path | None, **flags: object) -> Settings:
    try:
        return load_settings(config, **flags)
    except ValueError as exc:
        raise click.UsageError(f"invalid settings: {exc}") from exc


DEFAULT_NODE_URL = "http://127.0.0.1:8000"  # where `modelyard serve` listens by default


def given_or_env_token(given: str | None) -> str | None:
    """A command's --token, else MODELYARD_TOKEN (through the settings), else None."""
    if given:
        return given
    stored = settings_from(None).token
    return stored.get_secret_value() if stored else None


config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="MODELYARD_CONFIG",
    help="TOML settings file.",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data directory [env MODELYARD_DATA_DIR; ./modelyard-data]",
)


@contextmanager
def opened(settings: Settings, *, process: str = "serve") -> Iterator[Runtime]:
    """The node on `settings`, for one command; its errors become exit codes."""
    from registry.runtime import Runtime

    try:
        runtime = Runtime.open(settings, process=process)
    except ValueError as exc:  # stored credentials that do not open with the key
        raise click.UsageError(str(exc)) from exc
    try:
        yield runtime
    except RegistryError as exc:
        fail(exc)
    finally:
        runtime.close()
