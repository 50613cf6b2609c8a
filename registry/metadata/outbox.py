"""The mirror outbox's write side: a change worth pushing becomes one row per mirror covering
its repo, in the transaction that makes the change (so a crash can lose neither)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from sqlmodel import Session, select

from registry.metadata.tables import Mirror, MirrorOutbox

MIRRORED_KINDS = ("commit.add", "ref.set", "ref.delete")


def covers(glob: str, repo_key: str) -> bool:
    """Does a mirror's `repos` glob (over namespace/name) cover a repo key (`model/ns/n`)?"""
    return fnmatchcase(repo_key.split("/", 1)[-1], glob)


def enqueue(session: Session, serial: int, kind: str, repo_key: str, *, private: bool) -> None:
    if kind not in MIRRORED_KINDS or private:
        return  # private repos never leave the node through a mirror
    mirrors = session.info.get("mirrors")
    if mirrors is None:  # read once per transaction
        mirrors = [(m.name, m.repos) for m in session.exec(select(Mirror)).all()]
        session.info["mirrors"] = mirrors
    for name, glob in mirrors:
        if covers(glob, repo_key):
            session.add(MirrorOutbox(mirror=name, serial=serial, repo=repo_key, kind=kind))
