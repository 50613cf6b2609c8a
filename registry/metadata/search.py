"""The search index: a cache of each repo's main branch, with its tags and words."""

from __future__ import annotations

from sqlmodel import Session


class SearchIndex:
    def __init__(self, session: Session) -> None:
        self._session = session
