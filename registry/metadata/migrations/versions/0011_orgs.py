"""Organisations: an org's name (shared with no user) and its members' roles.

Revision ID: 0011
Revises: 0010
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "org",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "orgmember",
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("org", "user"),
    )
    op.create_index("ix_orgmember_user", "orgmember", ["user"])


def downgrade() -> None:
    op.drop_index("ix_orgmember_user", table_name="orgmember")
    op.drop_table("orgmember")
    op.drop_table("org")
