"""The blob_quarantine table: blobs whose stored bytes failed a scrub, never served meanwhile.

Revision ID: 0005
Revises: 0004
Created: 2026-12-03

A scrub's cursor and last run live in node_state, its running totals in counter (rows made on
first use), so this table is the only schema change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blob_quarantine",
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("found_ms", BIG, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_ms", BIG, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("blake3"),
    )


def downgrade() -> None:
    op.drop_table("blob_quarantine")
