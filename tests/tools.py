"""External programs some tests need: skipped on a user's machine without them, required in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is required in CI (.ci/run installs it)")
        pytest.skip(f"{program} is not installed")
    return path


def require_postgres() -> None:
    """The machine's PostgreSQL (127.0.0.1:5432, user postgres), as .ci/run starts it."""
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI (.ci/run starts it): {exc}")
        pytest.skip(f"PostgreSQL is not running: {exc}")


def require_mounts() -> None:
    """Mounting a size-limited tmpfs (root on Linux), for the disk-fault tests."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-fault tests mount a tmpfs: CI runs them as root")
        pytest.skip("mounting a tmpfs needs root")
