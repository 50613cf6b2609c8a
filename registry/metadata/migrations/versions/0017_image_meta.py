"""The image_meta and image_resource tables: what image blobs say made them, and which model
files ComfyUI workflow files (JSON) name (`kind`: image | workflow).

Revision ID: 0017
Revises: 0016
Created: 2026-12-06

Filled in the background (`registry/service/images.py`); an image blob without a row is
pending, so an existing node reads the images it already holds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "image_meta",
        sa.Column("blake3", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("problem", sa.String(), nullable=True),
        sa.Column("generation", sa.String(), nullable=True),
        sa.Column("read_ms", BIG, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("blake3"),
    )
    op.create_table(
        "image_resource",
        sa.Column("image", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("name_key", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("image", "position"),
    )
    op.create_index("ix_image_resource_name_key", "image_resource", ["name_key"])
    op.create_index("ix_image_resource_hash", "image_resource", ["hash"])


def downgrade() -> None:
    op.drop_index("ix_image_resource_hash", table_name="image_resource")
    op.drop_index("ix_image_resource_name_key", table_name="image_resource")
    op.drop_table("image_resource")
    op.drop_table("image_meta")
