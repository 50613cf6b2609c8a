"""The full-text part of the search index: SQLite FTS5 on the embedded default, a `tsvector`
with a GIN index on Postgres. Both hold the words `registry.domain.search.tokens` made, so
matching is the same on both and in the direct query over what is not indexed yet.
"""

from __future__ import annotations

from sqlalchemy import Engine, TextClause, text
from sqlmodel import Session


class FullText:
    def __init__(self, engine: Engine) -> None:
        # The tables are made by the migrations (registry/metadata/migrations).
        self._sqlite = engine.dialect.name == "sqlite"

    def put(self, session: Session, repo_id: int, words: str) -> None:
        self.delete(session, repo_id)
        if self._sqlite:
            insert = "INSERT INTO search_fts (rowid, words) VALUES (:id, :words)"
        else:
            insert = "INSERT INTO search_text VALUES (:id, to_tsvector('simple', :words))"
        session.execute(text(insert), {"id": repo_id, "words": words})

    def delete(self, session: Session, repo_id: int) -> None:
        table, column = ("search_fts", "rowid") if self._sqlite else ("search_text", "repo_id")
        session.execute(text(f"DELETE FROM {table} WHERE {column} = :id"), {"id": repo_id})

    def matching_ids(self, words: list[str]) -> TextClause:
        """A subquery of repo ids whose documents have a word starting with each of `words`.

        `words` come from the tokenizer (letters and digits only), so they are safe to quote.
        """
        if self._sqlite:
            expression = " AND ".join(f'"{w}"*' for w in words)
            return text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts").bindparams(
                fts=expression
            )
        expression = " & ".join(f"'{w}':*" for w in words)
        return text(
            "SELECT repo_id FROM search_text WHERE words @@ to_tsquery('simple', :fts)"
        ).bindparams(fts=expression)
