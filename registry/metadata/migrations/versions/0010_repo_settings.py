"""Repo settings: a repo's gate ("auto", "manual" or null), and the access requests of users
to gated repos.

Revision ID: 0010
Revises: 0009
Created: 2026-12-05

Repos made before this revision are not gated.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("repo", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gated", sa.String(), nullable=True))
    op.create_table(
        "access_request",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.Column("updated_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("repo_id", "user"),
    )


def downgrade() -> None:
    op.drop_table("access_request")
    with op.batch_alter_table("repo", schema=None) as batch_op:
        batch_op.drop_column("gated")
