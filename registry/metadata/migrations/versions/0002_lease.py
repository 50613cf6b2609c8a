"""The lease table: who runs a node-wide background job when processes share one database.

Revision ID: 0002
Revises: 0001
Created: 2026-12-03

IF NOT EXISTS for the databases made by the one version that had the table before
migrations (create_all made it there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("name"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("lease")
