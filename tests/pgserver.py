"""A PostgreSQL server of a test's own (initdb into a temp dir, run as the `postgres` user on a
loopback port), which the test may stop and start without touching the machine's server that
other tests share. Needs root (to run as `postgres`) and Debian's PostgreSQL binaries: skipped
on a user's machine without them, required under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.ports import free_port


def _binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PgServer:
    def __init__(self) -> None:
        bin_dir = _binaries()
        if bin_dir is None or os.geteuid() != 0 or shutil.which("runuser") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("a private PostgreSQL needs root and Debian's postgresql binaries")
            pytest.skip("a private PostgreSQL needs root and Debian's postgresql binaries")
        self._bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._as_postgres("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.start()
        self._as_postgres_sql("CREATE DATABASE modelyard")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/modelyard"

    def _as_postgres(self, program: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self._bin / program), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def _as_postgres_sql(self, sql: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.encode().decode())

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        log = str(self.dir / "server.log")
        self._as_postgres(
            "pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        """A fast shutdown: open connections are terminated, as in a server restart."""
        self._as_postgres("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.dir, ignore_errors=True)
