"""Baseline: the schema as it was when migrations began (every table but `lease`).

Revision ID: 0001
Revises:
Created: 2026-12-03

Databases made before migrations run this revision too, so it creates only what is missing
(IF NOT EXISTS): a data dir last opened by an older version may lack tables or indexes that
the old start-up code (create_all, then each index) would have added. Later revisions need
not be written this way: they only ever run on versioned databases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Milliseconds, sizes and serials: BIGINT on Postgres, INTEGER (64-bit, the rowid) on SQLite.
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _table("nodestate", _text("key"), _text("value"), sa.PrimaryKeyConstraint("key"))
    _table("counter", _text("name"), _int("value"), sa.PrimaryKeyConstraint("name"))
    _table(
        "user",
        _text("name"),
        _bool("is_admin"),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("name"),
    )
    _table(
        "token",
        _int("id"),
        _text("hash"),
        _text("user"),
        _bool("write"),
        _text("label"),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("ix_token_hash", "token", "hash", unique=True)
    _index("ix_token_user", "token", "user")
    _repo()
    _table(
        "blob",
        _text("blake3"),
        _text("sha256"),
        _big("size"),
        _text("git_sha1", nullable=True),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("blake3"),
    )
    _index("ix_blob_sha256", "blob", "sha256")
    _commits()
    _replication()
    _search()
    _mirrors()
    _table(
        "scanresult",
        _text("blake3"),
        _text("status"),
        _text("findings"),
        _big("scanned_ms"),
        sa.PrimaryKeyConstraint("blake3"),
    )
    # The serial counter exists from the start, so that the first write transactions of
    # processes starting at once all find the row they lock (see registry/metadata/db.py).
    op.execute(
        "INSERT INTO counter (name, value) SELECT 'serial', 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM counter WHERE name = 'serial')"
    )


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE search_fts")
    else:
        op.drop_table("search_text")


_TABLES = (
    "nodestate",
    "counter",
    "user",
    "token",
    "repo",
    "blob",
    "commit",
    "tree_entry",
    "ref",
    "change",
    "peer",
    "tombstone",
    "search_entry",
    "search_tag",
    "mirror",
    "mirror_outbox",
    "mirror_commit",
    "scanresult",
)


def _repo() -> None:
    _table(
        "repo",
        _int("id"),
        _text("type"),
        _text("namespace"),
        _text("name"),
        _bool("private"),
        _text("home_node"),
        _text("incarnation"),
        _big("created_ms"),
        _big("updated_ms"),
        _int("ref_version"),
        _int("pr_count"),
        _big("downloads"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("type", "namespace", "name"),
    )
    _index("ix_repo_namespace", "repo", "namespace")
    # Listings and search walk these in order and stop after a page.
    _index("ix_repo_type_updated", "repo", "type", "updated_ms")
    _index("ix_repo_type_created", "repo", "type", "created_ms")
    _index("ix_repo_type_downloads", "repo", "type", "downloads")


def _commits() -> None:
    _table(
        "commit",
        _text("id"),
        _int("repo_id"),
        _text("parent", nullable=True),
        _text("author"),
        _text("title"),
        _text("message"),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("ix_commit_repo_id", "commit", "repo_id")
    _table(
        "tree_entry",
        _text("commit_id"),
        _text("path"),
        _text("blake3"),
        _text("sha256"),
        _big("size"),
        _bool("lfs"),
        _text("git_sha1", nullable=True),
        _text("last_commit"),
        sa.PrimaryKeyConstraint("commit_id", "path"),
    )
    _index("ix_tree_entry_blake3", "tree_entry", "blake3")
    _index("ix_tree_entry_sha256", "tree_entry", "sha256")
    _table(
        "ref",
        _int("repo_id"),
        _text("name"),
        _text("commit_id"),
        _int("version"),
        sa.PrimaryKeyConstraint("repo_id", "name"),
    )


def _replication() -> None:
    _table(
        "change",
        _big("serial"),
        _text("origin"),
        _big("origin_serial"),
        _text("kind"),
        _text("repo"),
        _bool("private"),
        _text("body"),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("serial"),
    )
    _index("ix_change_origin", "change", "origin", "origin_serial", unique=True)
    _table(
        "peer",
        _text("id"),
        _text("url"),
        _text("token", nullable=True),
        _text("blobs"),
        _text("node_id", nullable=True),
        _text("epoch", nullable=True),
        _big("cursor"),
        _big("head"),
        _big("behind_since_ms", nullable=True),
        _big("created_ms"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )
    _table(
        "tombstone",
        _text("repo"),
        _text("incarnation"),
        sa.PrimaryKeyConstraint("repo", "incarnation"),
    )


def _search() -> None:
    _table(
        "search_entry",
        _int("repo_id"),
        _text("commit_id", nullable=True),
        _big("repo_updated_ms"),
        _text("kind", nullable=True),
        _text("base_model", nullable=True),
        _text("base_model_key", nullable=True),
        _text("license", nullable=True),
        _text("description"),
        _text("tags"),
        _text("trigger_words"),
        _text("suggested_tags"),
        _bool("complete"),
        _big("indexed_ms"),
        sa.PrimaryKeyConstraint("repo_id"),
    )
    _index("ix_search_entry_kind", "search_entry", "kind")
    _index("ix_search_entry_base_model_key", "search_entry", "base_model_key")
    _table(
        "search_tag",
        _int("repo_id"),
        _text("tag"),
        sa.PrimaryKeyConstraint("repo_id", "tag"),
    )
    _index("ix_search_tag_tag", "search_tag", "tag", "repo_id")
    # The full-text index (registry/metadata/search.py), one kind per dialect.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(words, "
            "tokenize = 'unicode61 remove_diacritics 0')"
        )
    else:
        op.execute(
            "CREATE TABLE IF NOT EXISTS search_text (repo_id BIGINT PRIMARY KEY, words TSVECTOR)"
        )
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_search_text_words ON search_text USING GIN (words)"
        )


def _mirrors() -> None:
    _table(
        "mirror",
        _text("name"),
        _text("kind"),
        _text("url", nullable=True),
        _text("token", nullable=True),
        _text("repos"),
        _big("created_ms"),
        _big("last_success_ms", nullable=True),
        _text("last_error", nullable=True),
        _big("last_error_ms", nullable=True),
        _int("pushed"),
        sa.PrimaryKeyConstraint("name"),
    )
    _table(
        "mirror_outbox",
        _text("mirror"),
        _big("serial"),
        _text("repo"),
        _text("kind"),
        _int("attempts"),
        _big("next_ms"),
        _text("last_error", nullable=True),
        sa.PrimaryKeyConstraint("mirror", "serial"),
    )
    _index("ix_mirror_outbox_repo", "mirror_outbox", "repo")
    _table(
        "mirror_commit",
        _text("mirror"),
        _text("commit_id"),
        _text("remote_id"),
        sa.PrimaryKeyConstraint("mirror", "commit_id"),
    )


def _table(name: str, *items: sa.schema.SchemaItem) -> None:
    op.create_table(name, *items, if_not_exists=True)


def _index(name: str, table: str, *columns: str, unique: bool = False) -> None:
    op.create_index(name, table, list(columns), unique=unique, if_not_exists=True)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def _big(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, BIG, nullable=nullable)


def _bool(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), nullable=False)
