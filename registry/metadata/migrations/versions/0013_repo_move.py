"""Repo moves: the ids repos had before they were renamed or transferred, redirected to them.

Revision ID: 0013
Revises: 0012
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "repo_redirect",
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("moved_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("repo"),
    )
    op.create_index("ix_repo_redirect_repo_id", "repo_redirect", ["repo_id"])


def downgrade() -> None:
    op.drop_index("ix_repo_redirect_repo_id", table_name="repo_redirect")
    op.drop_table("repo_redirect")
