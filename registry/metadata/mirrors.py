"""Mirrors, their push outbox, and which remote commit carries one of ours."""

from __future__ import annotations

from sqlmodel import Session, select

from registry.domain.changes import MIRRORED_KINDS
from registry.domain.patterns import covers
from registry.metadata.tables import Mirror, MirrorOutbox


class Mirrors:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._globs: list[tuple[str, str]] | None = None  # (name, repos), read once

    def enqueue(self, serial: int, kind: str, repo_key: str, *, private: bool) -> None:
        """A change was logged: one outbox row per mirror covering its repo, if it is worth
        pushing. Private repos never leave the node through a mirror."""
        if kind not in MIRRORED_KINDS or private:
            return
        if self._globs is None:
            self._globs = [(m.name, m.repos) for m in self._session.exec(select(Mirror)).all()]
        for name, glob in self._globs:
            if covers(glob, repo_key):
                self._session.add(
                    MirrorOutbox(mirror=name, serial=serial, repo=repo_key, kind=kind)
                )
