"""History chains: each change entry's per-origin chain and when its history was abandoned;
a peer's chain at its cursor and its last divergence; peers' repos held under another id. The
chains of this node's own entries are computed here; entries learned from peers take theirs
when they come again.

Revision ID: 0007
Revises: 0006
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry.domain.history import GENESIS, link

revision = "0007"
down_revision = "0006"
branch_labels: str | None = None
depends_on: str | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("change", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("abandoned_ms", BIG, nullable=True))
        batch_op.add_column(sa.Column("recovered_ms", BIG, nullable=True))
        batch_op.drop_index("ix_change_origin")
        batch_op.create_index("ix_change_origin", ["origin", "origin_serial"], unique=False)
        batch_op.create_index("ix_change_abandoned_ms", ["abandoned_ms"], unique=False)
    with op.batch_alter_table("peer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cursor_chain", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("diverged_ms", BIG, nullable=True))
        batch_op.add_column(sa.Column("resync_to", BIG, nullable=True))
    op.create_table(
        "repo_alias",
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("home", sa.String(), nullable=False),
        sa.Column("local", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "home"),
        sa.UniqueConstraint("local"),
    )
    _chain_own_entries()
    # Every peer's feed is read once more from the start: the entries held here take the
    # chains they come with (`ReplicationService._adopt_chains`; nothing is applied twice).
    op.execute("UPDATE peer SET cursor = 0")


def _chain_own_entries() -> None:
    connection = op.get_bind()
    node = connection.execute(sa.text("SELECT value FROM nodestate WHERE key = 'node_id'")).scalar()
    if node is None:
        return  # a database no node has opened yet: no entries
    rows = connection.execute(
        sa.text(
            "SELECT serial, origin_serial, kind, repo, private, body FROM change "
            "WHERE origin = :node ORDER BY serial"
        ),
        {"node": node},
    )
    chain = GENESIS
    for serial, origin_serial, kind, repo, private, body in rows.fetchall():
        chain = link(chain, node, origin_serial, kind, repo, bool(private), body)
        connection.execute(
            sa.text("UPDATE change SET chain = :chain WHERE serial = :serial"),
            {"chain": chain, "serial": serial},
        )


def downgrade() -> None:
    op.drop_table("repo_alias")
    with op.batch_alter_table("peer", schema=None) as batch_op:
        batch_op.drop_column("resync_to")
        batch_op.drop_column("diverged_ms")
        batch_op.drop_column("cursor_chain")
    with op.batch_alter_table("change", schema=None) as batch_op:
        batch_op.drop_index("ix_change_abandoned_ms")
        batch_op.drop_index("ix_change_origin")
        batch_op.create_index("ix_change_origin", ["origin", "origin_serial"], unique=True)
        batch_op.drop_column("recovered_ms")
        batch_op.drop_column("abandoned_ms")
        batch_op.drop_column("chain")
