"""Mirror roll-backs: a ref a push moved back past a commit this node no longer holds, and
where the mirror keeps it; remote commits found by their remote id.

Revision ID: 0008
Revises: 0007
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mirror_rollback",
        sa.Column("mirror", sa.String(), nullable=False),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("ref", sa.String(), nullable=False),
        sa.Column("lost_commit", sa.String(), nullable=False),
        sa.Column("new_commit", sa.String(), nullable=True),
        sa.Column("kept_as", sa.String(), nullable=False),
        sa.Column("at_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("mirror", "repo", "ref", "lost_commit"),
    )
    op.create_index("ix_mirror_commit_remote", "mirror_commit", ["mirror", "remote_id"])


def downgrade() -> None:
    op.drop_index("ix_mirror_commit_remote", table_name="mirror_commit")
    op.drop_table("mirror_rollback")
