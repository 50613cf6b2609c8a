"""Xet: xorbs held here, files uploaded through Xet with their terms, which xorbs each file
names, and the global-dedup index of chunks.

Revision ID: 0006
Revises: 0005
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xet_chunk",
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("xorb", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "xet_file",
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.Column("terms", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    with op.batch_alter_table("xet_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_xet_file_blake3"), ["blake3"], unique=False)

    op.create_table(
        "xet_file_xorb",
        sa.Column("file", sa.String(), nullable=False),
        sa.Column("xorb", sa.String(), nullable=False),
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.PrimaryKeyConstraint("file", "xorb"),
    )
    with op.batch_alter_table("xet_file_xorb", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_xet_file_xorb_blake3"), ["blake3"], unique=False)
        batch_op.create_index(batch_op.f("ix_xet_file_xorb_xorb"), ["xorb"], unique=False)

    op.create_table(
        "xorb",
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("size", BIG, nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    with op.batch_alter_table("xorb", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_xorb_blake3"), ["blake3"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("xorb", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_xorb_blake3"))

    op.drop_table("xorb")
    with op.batch_alter_table("xet_file_xorb", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_xet_file_xorb_blake3"))
        batch_op.drop_index(batch_op.f("ix_xet_file_xorb_xorb"))

    op.drop_table("xet_file_xorb")
    with op.batch_alter_table("xet_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_xet_file_blake3"))

    op.drop_table("xet_file")
    op.drop_table("xet_chunk")
