"""The model_hash table: AutoV3, AutoV1 and kohya's claimed hashes of safetensors blobs.

Revision ID: 0016
Revises: 0015
Created: 2026-12-06

Filled in the background (`registry/service/modelhashes.py`); a blob named `*.safetensors`
without a row is pending, so an existing node fills it for the files it already holds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_hash",
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("tail_sha256", sa.String(), nullable=True),
        sa.Column("autov1", sa.String(), nullable=True),
        sa.Column("sshs_model_hash", sa.String(), nullable=True),
        sa.Column("sshs_legacy_hash", sa.String(), nullable=True),
        sa.Column("problem", sa.String(), nullable=True),
        sa.Column("hashed_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("blake3"),
    )
    op.create_index("ix_model_hash_tail_sha256", "model_hash", ["tail_sha256"])
    op.create_index("ix_model_hash_autov1", "model_hash", ["autov1"])


def downgrade() -> None:
    op.drop_index("ix_model_hash_autov1", table_name="model_hash")
    op.drop_index("ix_model_hash_tail_sha256", table_name="model_hash")
    op.drop_table("model_hash")
