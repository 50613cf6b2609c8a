"""Configured mirrors and their durable outbox (the read and bookkeeping side; the pushing
lives in `mirror.outbox`).

Theory of operation: a change worth pushing (a commit, a ref move) writes one outbox row per
covering mirror in its own transaction (`registry.metadata.mirrors`). A row leaves the outbox
only when its push succeeded; a failure records the error and a time before which the row is
not tried again (exponential backoff with jitter). Rows of one repo are pushed in serial order,
so a mirror never sees a ref before the commit it names. Adding a mirror enqueues what its
repos already hold, so it converges to the node's state, not only to later changes.

A mirror's token is stored through a CredentialBox (sealed when the node has a credentials
key), opened only in `configs()` for the pusher, and never shown back: views say only whether
one is set.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from registry.domain.access import Principal, require_admin
from registry.domain.clock import now_ms
from registry.domain.errors import InvalidError, MirrorExistsError, MirrorNotFoundError
from registry.domain.names import NAME_PART
from registry.domain.patterns import covers
from registry.domain.redaction import redact
from registry.domain.tokens import check_credential
from registry.domain.urls import check_http_url, check_s3_url
from registry.metadata.db import Database
from registry.metadata.mirrors import Backlog, MirrorRecord
from registry.metadata.mirrors import OutboxItem as OutboxItem  # handed to the pusher
from registry.metadata.mirrors import RollbackRecord as RollbackRecord  # made by the pusher
from registry.metadata.repos import Redirect
from registry.metadata.tx import Tx
from registry.service.credentials import CredentialBox

logger = logging.getLogger(__name__)
KINDS = ("hf", "s3", "node")
SHOWN_ROLLBACKS = 20
SHOWN_MOVES = 20
SCANNED_MOVES = 1000  # the newest moves a mirror's view looks through for those it covers


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
    rollbacks: int  # refs a push moved back past commits this node lost (kept on the mirror)
    recent_rollbacks: tuple[RollbackRecord, ...]  # newest first
    # Public repos it covers that moved (newest first): moves are not pushed, the mirror
    # keeps them under the old id and gets their later changes under the new one.
    moved: tuple[Redirect, ...] = ()

    @property
    def state(self) -> str:
        """ok (nothing waiting), pushing, or failing (the newest attempt failed)."""
        if self.last_error_ms and (self.last_success_ms or 0) < self.last_error_ms:
            return "failing"
        return "pushing" if self.backlog else "ok"


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
        self,
        principal: Principal,
        name: str,
        kind: str,
        url: str | None,
        token: str | None,
        repos: str = "*",
    ) -> MirrorView:
        """Push the repos matching `repos` (what they hold now, then every change) to a new
        mirror (the admin's call)."""
        require_admin(principal)
        checked = check_config(name, kind, url, repos)
        token = check_credential(token, "A mirror's token")
        with self._db.write() as tx:
            if tx.mirrors.exists(name):
                raise MirrorExistsError(f"A mirror named {name!r} exists; remove it first")
            backlog = tx.mirrors.add(name, kind, checked, self._box.seal(token), repos)
        logger.info("mirror added name=%s kind=%s url=%s backlog=%d", name, kind, checked, backlog)
        return self.view(principal, name)

    def remove(self, principal: Principal, name: str) -> None:
        """Stop pushing to a mirror (the admin's call); what was pushed stays there."""
        require_admin(principal)
        with self._db.write() as tx:
            if not tx.mirrors.exists(name):
                raise MirrorNotFoundError(f"No mirror named {name!r}")
            tx.mirrors.remove(name)
        logger.info("mirror removed name=%s", name)

    def configs(self) -> list[MirrorConfig]:
        with self._db.read() as tx:
            mirrors = tx.mirrors.all()
        box = self._box
        return [
            MirrorConfig(
                m.name, m.kind, m.url, box.unseal(m.stored_token, f"mirror {m.name}"), m.repos
            )
            for m in mirrors
        ]

    def reseal(self) -> None:
        """At start: check every stored token opens, and seal those kept as given once a
        credentials key is configured."""
        with self._db.write() as tx:
            for mirror in tx.mirrors.all():
                sealed = self._box.reseal(mirror.stored_token, f"mirror {mirror.name}")
                if sealed is not None:
                    tx.mirrors.set_token(mirror.name, sealed)

    def listing(self, principal: Principal) -> list[MirrorView]:
        """Every mirror with its backlog and last results (the admin's call)."""
        require_admin(principal)
        return self.views()

    def views(self) -> list[MirrorView]:
        """Every mirror with its backlog and last results (what the status page shows)."""
        with self._db.read() as tx:
            return [_view(tx, m) for m in tx.mirrors.all()]

    def view(self, principal: Principal, name: str) -> MirrorView:
        """One mirror (the admin's call)."""
        require_admin(principal)
        with self._db.read() as tx:
            mirror = tx.mirrors.get(name)
            if mirror is None:
                raise MirrorNotFoundError(f"No mirror named {name!r}")
            return _view(tx, mirror)

    def next_items(self, mirror: str, limit: int = 100) -> list[OutboxItem]:
        """The oldest outbox rows of a mirror, with what each change says (serial order)."""
        with self._db.read() as tx:
            return tx.mirrors.next_items(mirror, limit)

    def done(self, item: OutboxItem) -> None:
        with self._db.write() as tx:
            tx.mirrors.done(item.mirror, item.serial)

    def failed(self, item: OutboxItem, error: str) -> None:
        """Record a failed push; the row waits 2^attempts x the initial delay (jittered)."""
        error = redact(error)  # shown in the API and status; a remote's answer may quote one
        initial, cap = self._retry
        delay = min(cap, initial * 2 ** min(item.attempts, 30)) * random.uniform(0.5, 1.0)
        with self._db.write() as tx:
            next_ms = now_ms() + int(delay * 1000)
            tx.mirrors.failed(item.mirror, item.serial, error[:500], next_ms)

    def remote_commit(self, mirror: str, commit_id: str) -> str | None:
        with self._db.read() as tx:
            return tx.mirrors.remote_commit(mirror, commit_id)

    def record_remote(self, mirror: str, commit_id: str, remote_id: str) -> None:
        with self._db.write() as tx:
            tx.mirrors.record_remote(mirror, commit_id, remote_id)

    def local_commit(self, mirror: str, remote_id: str) -> str | None:
        with self._db.read() as tx:
            return tx.mirrors.local_commit(mirror, remote_id)

    def lost_here(self, commit_id: str) -> bool:
        """Did this node lose the commit (a restore from a backup): it neither holds it nor
        brought it back with `modelyard recover`?"""
        with self._db.read() as tx:
            held = tx.commits.existing([commit_id])
            return not held and not tx.commits.brought_back(commit_id)

    def rolled_back(self, mirror: str, rollback: RollbackRecord) -> None:
        logger.warning(
            "mirror ref rolled back mirror=%s repo=%s ref=%s lost=%s new=%s kept_as=%s",
            mirror,
            rollback.repo,
            rollback.ref,
            rollback.lost_commit,
            rollback.new_commit,
            rollback.kept_as,
        )
        with self._db.write() as tx:
            tx.mirrors.rolled_back(mirror, rollback)


def _view(tx: Tx, mirror: MirrorRecord) -> MirrorView:
    backlog: Backlog = tx.mirrors.backlog(mirror.name)
    rollbacks, recent = tx.mirrors.rollbacks(mirror.name, SHOWN_ROLLBACKS)
    return MirrorView(
        mirror.name,
        mirror.kind,
        mirror.url,
        mirror.repos,
        mirror.token_set,
        backlog.count,
        backlog.oldest_ms,
        mirror.pushed,
        mirror.last_success_ms,
        mirror.last_error,
        mirror.last_error_ms,
        rollbacks,
        tuple(recent),
        tuple(
            r
            for r in tx.repos.redirects(SCANNED_MOVES)
            if not r.repo.private and covers(mirror.repos, r.old)
        )[:SHOWN_MOVES],
    )
