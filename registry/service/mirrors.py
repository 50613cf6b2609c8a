"""Configured mirrors and their durable outbox (the read and bookkeeping side; the pushing
lives in `mirror.outbox`).

Theory of operation: a change worth pushing (a commit, a ref move) writes one outbox row per
covering mirror in its own transaction (`registry.metadata.outbox`). A row leaves the outbox
only when its push succeeded; a failure records the error and a time before which the row is
not tried again (exponential backoff with jitter). Rows of one repo are pushed in serial order,
so a mirror never sees a ref before the commit it names. Adding a mirror enqueues what its
repos already hold, so it converges to the node's state, not only to later changes.

A mirror's token is stored through a CredentialBox (sealed when the node has a credentials
key), opened only in `configs()` for the pusher, and never shown back: views say only whether
one is set.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert
from sqlmodel import col, select

from registry.domain.changes import MIRRORED_KINDS
from registry.domain.clock import now_ms
from registry.domain.errors import InvalidError, MirrorExistsError, MirrorNotFoundError
from registry.domain.names import NAME_PART
from registry.domain.patterns import covers
from registry.domain.redaction import redact
from registry.domain.tokens import check_credential
from registry.domain.urls import check_http_url, check_s3_url
from registry.metadata.db import Database
from registry.metadata.tables import Change, Mirror, MirrorCommit, MirrorOutbox
from registry.service.credentials import CredentialBox

logger = logging.getLogger(__name__)
KINDS = ("hf", "s3", "node")


@dataclass(frozen=True)
class MirrorConfig:
    name: str
    kind: str
    url: str | None  # None for `hf`: huggingface_hub's own default (HF_ENDPOINT, else the Hub)
    token: str | None = field(repr=False)
    repos: str


@dataclass(frozen=True)
class MirrorView:
    name: str
    kind: str
    url: str | None
    repos: str
    token_set: bool
    backlog: int  # changes waiting to be pushed
    oldest_pending_ms: int | None
    pushed: int
    last_success_ms: int | None
    last_error: str | None
    last_error_ms: int | None

    @property
    def state(self) -> str:
        """ok (nothing waiting), pushing, or failing (the newest attempt failed)."""
        if self.last_error_ms and (self.last_success_ms or 0) < self.last_error_ms:
            return "failing"
        return "pushing" if self.backlog else "ok"


@dataclass(frozen=True)
class OutboxItem:
    mirror: str
    serial: int
    repo: str  # repo key: model/namespace/name
    kind: str
    body: dict[str, Any]
    attempts: int
    next_ms: int


def check_config(name: str, kind: str, url: str | None, repos: str) -> str | None:
    """Validated URL for a mirror (fails fast on nonsense); None keeps the Hub's default."""
    if not NAME_PART.match(name):
        raise InvalidError(f"Invalid mirror name {name!r}: letters, digits, '-', '_', '.'")
    if kind not in KINDS:
        raise InvalidError(f"Mirror kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not repos.strip():
        raise InvalidError("`repos` is a glob over namespace/name, such as `alice/*` or `*`")
    if url is None and kind == "hf":
        return None
    if kind == "s3":
        return check_s3_url(url or "", "An s3 mirror's url")
    return check_http_url(url or "", f"A {kind} mirror's url")


class MirrorService:
    def __init__(
        self, db: Database, retry_initial: float, retry_max: float, box: CredentialBox
    ) -> None:
        self._db = db
        self._retry = (retry_initial, retry_max)
        self._box = box

    def add(
        self, name: str, kind: str, url: str | None, token: str | None, repos: str = "*"
    ) -> MirrorView:
        checked = check_config(name, kind, url, repos)
        token = check_credential(token, "A mirror's token")
        with self._db.legacy_write() as session:
            if session.get(Mirror, name) is not None:
                raise MirrorExistsError(f"A mirror named {name!r} exists; remove it first")
            session.add(
                Mirror(
                    name=name,
                    kind=kind,
                    url=checked,
                    token=self._box.seal(token),
                    repos=repos,
                    created_ms=now_ms(),
                )
            )
            backlog = session.exec(
                select(Change.serial, Change.repo, Change.kind)
                .where(col(Change.kind).in_(MIRRORED_KINDS), col(Change.private).is_(False))
                .order_by(col(Change.serial))
            ).all()
            rows = [
                {"mirror": name, "serial": s, "repo": r, "kind": k}
                for s, r, k in backlog
                if covers(repos, r)
            ]
            if rows:
                session.execute(insert(MirrorOutbox), rows)
        logger.info(
            "mirror added name=%s kind=%s url=%s backlog=%d", name, kind, checked, len(rows)
        )
        return self.view(name)

    def remove(self, name: str) -> None:
        with self._db.legacy_write() as session:
            if session.get(Mirror, name) is None:
                raise MirrorNotFoundError(f"No mirror named {name!r}")
            session.execute(delete(MirrorOutbox).where(col(MirrorOutbox.mirror) == name))
            session.execute(delete(MirrorCommit).where(col(MirrorCommit.mirror) == name))
            session.execute(delete(Mirror).where(col(Mirror.name) == name))
        logger.info("mirror removed name=%s", name)

    def configs(self) -> list[MirrorConfig]:
        with self._db.legacy_read() as session:
            rows = session.exec(select(Mirror).order_by(col(Mirror.name))).all()
        box = self._box
        return [
            MirrorConfig(m.name, m.kind, m.url, box.unseal(m.token, f"mirror {m.name}"), m.repos)
            for m in rows
        ]

    def reseal(self) -> None:
        """At start: check every stored token opens, and seal those kept as given once a
        credentials key is configured."""
        with self._db.legacy_write() as session:
            for mirror in session.exec(select(Mirror)).all():
                sealed = self._box.reseal(mirror.token, f"mirror {mirror.name}")
                if sealed is not None:
                    mirror.token = sealed
                    session.add(mirror)

    def views(self) -> list[MirrorView]:
        with self._db.legacy_read() as session:
            names = session.exec(select(Mirror.name).order_by(col(Mirror.name))).all()
        return [self.view(name) for name in names]

    def view(self, name: str) -> MirrorView:
        with self._db.legacy_read() as session:
            mirror = session.get(Mirror, name)
            if mirror is None:
                raise MirrorNotFoundError(f"No mirror named {name!r}")
            backlog, oldest = session.exec(
                select(func.count(), func.min(Change.created_ms))
                .select_from(MirrorOutbox)
                .join(Change, col(Change.serial) == col(MirrorOutbox.serial), isouter=True)
                .where(MirrorOutbox.mirror == name)
            ).one()
        return MirrorView(
            mirror.name,
            mirror.kind,
            mirror.url,
            mirror.repos,
            bool(mirror.token),
            int(backlog or 0),
            int(oldest) if oldest is not None else None,
            mirror.pushed,
            mirror.last_success_ms,
            mirror.last_error,
            mirror.last_error_ms,
        )

    def next_items(self, mirror: str, limit: int = 100) -> list[OutboxItem]:
        """The oldest outbox rows of a mirror, with what each change says (serial order)."""
        with self._db.legacy_read() as session:
            rows = session.exec(
                select(MirrorOutbox, Change)
                .join(Change, col(Change.serial) == col(MirrorOutbox.serial), isouter=True)
                .where(MirrorOutbox.mirror == mirror)
                .order_by(col(MirrorOutbox.serial))
                .limit(limit)
            ).all()
        return [
            OutboxItem(
                mirror,
                row.serial,
                row.repo,
                row.kind,
                json.loads(change.body) if change is not None else {},
                row.attempts,
                row.next_ms,
            )
            for row, change in rows
        ]

    def done(self, item: OutboxItem) -> None:
        with self._db.legacy_write() as session:
            row = session.get(MirrorOutbox, (item.mirror, item.serial))
            if row is None:  # another process of the node pushed it too and counted it
                return
            session.delete(row)
            mirror = session.get(Mirror, item.mirror)
            if mirror is not None:
                mirror.pushed += 1
                mirror.last_success_ms = now_ms()
                session.add(mirror)

    def failed(self, item: OutboxItem, error: str) -> None:
        """Record a failed push; the row waits 2^attempts x the initial delay (jittered)."""
        error = redact(error)  # shown in the API and status; a remote's answer may quote one
        initial, cap = self._retry
        delay = min(cap, initial * 2 ** min(item.attempts, 30)) * random.uniform(0.5, 1.0)
        with self._db.legacy_write() as session:
            row = session.get(MirrorOutbox, (item.mirror, item.serial))
            if row is not None:
                row.attempts += 1
                row.next_ms = now_ms() + int(delay * 1000)
                row.last_error = error[:500]
                session.add(row)
            mirror = session.get(Mirror, item.mirror)
            if mirror is not None:
                mirror.last_error, mirror.last_error_ms = error[:500], now_ms()
                session.add(mirror)

    def remote_commit(self, mirror: str, commit_id: str) -> str | None:
        with self._db.legacy_read() as session:
            row = session.get(MirrorCommit, (mirror, commit_id))
        return row.remote_id if row else None

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None:
        with self._db.legacy_write() as session:
            row = session.get(MirrorCommit, (mirror, commit_id))
            session.add(
                row or MirrorCommit(mirror=mirror, commit_id=commit_id, remote_id=remote_id)
            )
