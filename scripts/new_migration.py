"""Write the revision for what registry/metadata/tables.py changed since the newest one.

Usage: .venv/bin/python scripts/new_migration.py "add a column to x"

alembic compares the tables with a scratch SQLite database brought to head. Review what it
writes (one revision serves SQLite and Postgres: keep the batch operations and the BIGINT
variant of 64-bit columns), then run tests/integration/test_schema.py (both databases).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from registry.metadata.db import Database
from registry.metadata.schema import MIGRATIONS, alembic_config


def main(message: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    rev_id = f"{int(head or 0) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            db.migrate()
            with db.engine.begin() as connection:
                config = alembic_config(connection)
                script = command.revision(config, message, autogenerate=True, rev_id=rev_id)
        finally:
            db.dispose()
    assert script is not None and not isinstance(script, list), "one revision, one file"
    subprocess.run([Path(sys.executable).parent / "ruff", "format", script.path], check=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
