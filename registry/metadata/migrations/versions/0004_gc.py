"""Blob.wanted_ms: when an upload last stored or reused a blob, for gc's grace period.

Revision ID: 0004
Revises: 0003
Created: 2026-12-04

Existing blobs count as wanted when they were stored (their created_ms).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("blob") as batch_op:
        batch_op.add_column(sa.Column("wanted_ms", BIG, nullable=False, server_default="0"))
    op.execute("UPDATE blob SET wanted_ms = created_ms")


def downgrade() -> None:
    with op.batch_alter_table("blob") as batch_op:
        batch_op.drop_column("wanted_ms")
