"""The `generation` counter: every write transaction on a shared database moves it, and each
process's read cache follows it (see registry/metadata/db.py).

Revision ID: 0003
Revises: 0002
Created: 2026-12-03

Seeded here, under the migration lock, so processes starting at once never race to make it.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO counter (name, value) SELECT 'generation', 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM counter WHERE name = 'generation')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM counter WHERE name = 'generation'")
