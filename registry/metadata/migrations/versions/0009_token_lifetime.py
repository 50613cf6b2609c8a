"""Token lifetime: when a token expires, when it was revoked (the row stays, so a revoked token
is answered as such) and when it was last used (written in batches, so it may be late).

Revision ID: 0009
Revises: 0008
Created: 2026-12-05

All three are nullable: tokens made before this revision never expire, are not revoked and
have no recorded use.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_ms", BIG, nullable=True))
        batch_op.add_column(sa.Column("revoked_ms", BIG, nullable=True))
        batch_op.add_column(sa.Column("last_used_ms", BIG, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("last_used_ms")
        batch_op.drop_column("revoked_ms")
        batch_op.drop_column("expires_ms")
