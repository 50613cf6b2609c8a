"""Metadata in SQL (SQLite embedded default, Postgres for scale) through sqlmodel."""
