"""History rewrites: the tree entries of permanently deleted LFS files (so a download of one
answers that it was deleted), and the commits a super-squash left unreachable.

Revision ID: 0014
Revises: 0013
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "purged_file",
        sa.Column("commit_id", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.Column("purged_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("commit_id", "path"),
    )
    op.create_index("ix_purged_file_repo_id", "purged_file", ["repo_id"])
    op.create_table(
        "squashed_commit",
        sa.Column("commit_id", sa.String(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("squashed_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("commit_id"),
    )
    op.create_index("ix_squashed_commit_repo_id", "squashed_commit", ["repo_id"])


def downgrade() -> None:
    op.drop_index("ix_squashed_commit_repo_id", table_name="squashed_commit")
    op.drop_table("squashed_commit")
    op.drop_index("ix_purged_file_repo_id", table_name="purged_file")
    op.drop_table("purged_file")
