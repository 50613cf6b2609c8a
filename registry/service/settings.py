"""Repo settings (private, gated) and the access requests of gated repos.

Theory of operation: a settings change is written at the repo's home with a `repo.settings`
entry in its transaction. The repo's logged entries are marked private or public with it
(`apply_settings`), so the feed serves them from then on only to readers of the repo, and
its changes still waiting for a mirror are dropped. The `repo.settings` entry itself is
served as private only if the repo was private before and stays so: a peer that held the
public repo must learn that it is private now. Replicas apply it the same way
(`service/replication.py`). Access requests are kept on the node that took them and are not
replicated: a replica enforces the gate with the requests it knows of.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.access import Principal, may_write, passes_gate, require_write
from registry.domain.changes import GATES, RepoSettings
from registry.domain.clock import now_ms
from registry.domain.errors import (
    AccessRequestNotFoundError,
    GatedRepoError,
    InvalidError,
    InvalidSettingError,
    NotGatedError,
    UnauthorizedError,
)
from registry.domain.names import RepoId
from registry.domain.records import AccessRequestRecord, RepoRecord
from registry.metadata.db import Database
from registry.metadata.tx import Tx
from registry.service.identity import NodeIdentity
from registry.service.repos import find_repo, writable_repo

STATUSES = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class GateView:
    """What a repo page shows of a gated repo to its viewer."""

    gated: str | None
    manager: bool  # the viewer accepts and rejects requests
    mine: str | None  # the status of the viewer's own request (None: none)
    pending: list[AccessRequestRecord]  # for a manager


def gate_of(value: str | bool | None) -> str | None:
    """The gate a setting asks for: "auto", "manual", or None (False: not gated).

    Raises:
        InvalidSettingError: any other value.
    """
    if value is False:
        return None
    if isinstance(value, str) and value in GATES:
        return value
    raise InvalidSettingError(
        f"gated must be 'auto', 'manual' or false, not {value!r}", detail={"gated": value}
    )


def private_of(private: bool | None, visibility: str | None) -> bool | None:
    """Whether the repo is to be private (None: keep it as it is); `visibility` is the Hub
    client's newer form.

    Raises:
        InvalidSettingError: both given, or a visibility other than public or private.
    """
    if private is not None and visibility is not None:
        raise InvalidSettingError("Give private or visibility, not both")
    if visibility is None:
        return private
    if visibility not in ("public", "private"):
        raise InvalidSettingError(
            f"visibility must be 'public' or 'private', not {visibility!r}",
            detail={"visibility": visibility},
        )
    return visibility == "private"


def apply_settings(
    tx: Tx, repo: RepoRecord, *, private: bool, gated: str | None, logged_as: str | None = None
) -> None:
    """Set a repo's settings here (home or replica): its logged entries (under `logged_as`,
    its key at its home) follow its privacy, and a private repo's changes still waiting for
    a mirror are dropped."""
    tx.repos.set_settings(repo.id, private=private, gated=gated)
    if private != repo.private:
        tx.changes.set_private(logged_as or repo.key, repo.home_node, private)
    if private:
        tx.mirrors.drop_pending(repo.key)


def require_gate(tx: Tx, principal: Principal, repo: RepoRecord) -> None:
    """Refuse a gated repo's files to a reader without an accepted access request.

    Raises:
        GatedRepoError: gated, and the reader is neither a writer nor accepted.
    """
    ns = repo.repo.namespace
    if passes_gate(principal, gated=repo.gated, namespace=ns, accepted=False):
        return
    asked = tx.access.get(repo.id, principal.user) if principal.user else None
    if asked is not None and asked.status == "accepted":
        return
    raise GatedRepoError(
        f"Access to {repo.repo.type.value} {repo.repo.full_name} is restricted: sign in and "
        "request access to it (its owner accepts requests)",
        detail={"repo": repo.repo.full_name, "gated": repo.gated},
    )


class RepoSettingsService:
    def __init__(self, db: Database, node: NodeIdentity) -> None:
        self._db = db
        self._node = node

    def update(
        self,
        principal: Principal,
        repo: RepoId,
        *,
        private: bool | None = None,
        visibility: str | None = None,
        gated: str | bool | None = None,
    ) -> RepoRecord:
        """Change a repo's privacy and gate (None: keep); at its home, by a writer.

        Raises:
            InvalidSettingError, RepoNotFoundError, UnauthorizedError, ForbiddenError,
            HomeMismatchError.
        """
        wanted_private = private_of(private, visibility)  # checked before anything is read
        wanted_gate = None if gated is None else gate_of(gated)
        with self._db.write() as tx:
            found = writable_repo(tx, principal, repo, self._node)
            now_private = found.private if wanted_private is None else wanted_private
            gate = found.gated if gated is None else wanted_gate
            if (now_private, gate) == (found.private, found.gated):
                return found
            apply_settings(tx, found, private=now_private, gated=gate)
            # Served to every reader unless the repo was and stays private: a peer holding
            # the public repo must learn it is private now.
            served_private = found.private and now_private
            change = RepoSettings(found.incarnation, now_private, gate)
            tx.changes.append(self._node.node_id, found, change, private=served_private)
            updated = tx.repos.get(found.id)
        assert updated is not None, "written in this transaction"
        return updated

    def ask(self, principal: Principal, repo: RepoId) -> AccessRequestRecord:
        """A signed-in reader asks to download a gated repo's files: accepted at once when
        the gate is "auto", pending for the owner otherwise (an earlier answer stays).

        Raises:
            UnauthorizedError, RepoNotFoundError, NotGatedError.
        """
        if principal.user is None:
            raise UnauthorizedError("Sign in to request access to a gated repo")
        with self._db.write() as tx:
            found = find_repo(tx, principal, repo)
            if found.gated is None:
                raise NotGatedError(f"{found.repo.full_name} is not gated: no request needed")
            held = tx.access.get(found.id, principal.user)
            if held is not None:
                return held
            status = "accepted" if found.gated == "auto" else "pending"
            return tx.access.put(found.id, principal.user, status, now_ms())

    def requests(
        self, principal: Principal, repo: RepoId, status: str
    ) -> list[AccessRequestRecord]:
        """A repo's access requests of one status, for its writers.

        Raises:
            InvalidError, RepoNotFoundError, UnauthorizedError, ForbiddenError.
        """
        _status(status)
        with self._db.read() as tx:
            found = self._managed(tx, principal, repo)
            return tx.access.with_status(found.id, status)

    def handle(
        self, principal: Principal, repo: RepoId, user: str, status: str
    ) -> AccessRequestRecord:
        """Accept or reject a user's request, or set it back to pending (cancel).

        Raises:
            InvalidError, RepoNotFoundError, UnauthorizedError, ForbiddenError,
            AccessRequestNotFoundError.
        """
        _status(status)
        with self._db.write() as tx:
            found = self._managed(tx, principal, repo)
            if tx.access.get(found.id, user) is None:
                raise AccessRequestNotFoundError(
                    f"{user!r} has not requested access to {found.repo.full_name}",
                    detail={"user": user},
                )
            return tx.access.put(found.id, user, status, now_ms())

    def grant(self, principal: Principal, repo: RepoId, user: str) -> AccessRequestRecord:
        """Give a user access to a gated repo without a request of theirs.

        Raises:
            InvalidError, NotGatedError, RepoNotFoundError, UnauthorizedError, ForbiddenError.
        """
        if not user or len(user) > 100:
            raise InvalidError("Name the user to grant access to")
        with self._db.write() as tx:
            found = self._managed(tx, principal, repo)
            if found.gated is None:
                raise NotGatedError(f"{found.repo.full_name} is not gated: no access to grant")
            held = tx.access.get(found.id, user)
            if held is not None and held.status == "accepted":
                raise InvalidError(f"{user!r} has access to {found.repo.full_name} already")
            return tx.access.put(found.id, user, "accepted", now_ms())

    def gate_view(self, viewer: Principal, repo: RepoRecord) -> GateView:
        """A gated repo's gate as its page shows it to `viewer` (a repo they may read)."""
        manager = may_write(viewer, repo.repo.namespace)
        if repo.gated is None or viewer.user is None:
            return GateView(repo.gated, manager, None, [])
        with self._db.read() as tx:
            mine = tx.access.get(repo.id, viewer.user)
            pending = tx.access.with_status(repo.id, "pending") if manager else []
        return GateView(repo.gated, manager, mine.status if mine else None, pending)

    def _managed(self, tx: Tx, principal: Principal, repo: RepoId) -> RepoRecord:
        found = find_repo(tx, principal, repo)
        require_write(principal, found.repo.namespace)
        return found


def _status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidError(
            f"An access request's status is one of {STATUSES}, not {status!r}",
            detail={"status": status},
        )
