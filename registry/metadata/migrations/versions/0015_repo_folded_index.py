"""Repo ids looked up whatever their case: an index on (type, lower(namespace), lower(name)).

Revision ID: 0015
Revises: 0014
Created: 2026-12-05

`Repos.find` tries the exact spelling first and, on a miss, the case-folded one; without this
index that second look read every repo of the type.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_repo_folded",
        "repo",
        ["type", sa.text("lower(namespace)"), sa.text("lower(name)")],
    )


def downgrade() -> None:
    op.drop_index("ix_repo_folded", table_name="repo")
