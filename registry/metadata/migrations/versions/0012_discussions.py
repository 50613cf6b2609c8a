"""Discussions and pull requests: one row per discussion, one per event of it.

Revision ID: 0012
Revises: 0011
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "discussion",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("num", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("pull_request", sa.Boolean(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("base", sa.String(), nullable=True),
        sa.Column("merge_commit", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("repo_id", "num"),
    )
    op.create_table(
        "discussion_event",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("num", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.Column("edited_ms", BIG, nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_discussion_event_num", "discussion_event", ["repo_id", "num", "seq"])


def downgrade() -> None:
    op.drop_index("ix_discussion_event_num", table_name="discussion_event")
    op.drop_table("discussion_event")
    op.drop_table("discussion")
