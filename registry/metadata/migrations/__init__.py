"""alembic revisions of the metadata schema, applied by `registry.metadata.schema.migrate`.

A change to `registry/metadata/tables.py` needs a revision here: `.venv/bin/python
scripts/new_migration.py "what changed"` writes one from the difference (review it: one
revision serves SQLite and Postgres), and `tests/integration/test_schema.py` fails while the
tables and the revisions disagree.
"""
