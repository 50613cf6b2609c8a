"""One transaction's view of the metadata, by what it answers.

A service reads with `with db.read() as tx:` and writes with `with db.write() as tx:`, then
asks the query group it needs (`tx.repos.find(...)`, `tx.changes.append(...)`). Each group
lives in a module of its own and answers with frozen values from `registry.domain.records`
(or the group's own small dataclasses), never table rows. A group is made on first use and
lives as long as the transaction, so it may remember what it read (the change log keeps the
serial counter it locked and the mirrors it looked up).
"""

from __future__ import annotations

from functools import cached_property

from sqlmodel import Session

from registry.metadata.access import AccessRequests
from registry.metadata.accounts import Accounts
from registry.metadata.activity import Activity
from registry.metadata.blobs import Blobs
from registry.metadata.changelog import ChangeLog
from registry.metadata.commits import Commits
from registry.metadata.discussions import Discussions
from registry.metadata.images import Images
from registry.metadata.leases import LeaseTable
from registry.metadata.mirrors import Mirrors
from registry.metadata.modelhashes import ModelHashes
from registry.metadata.orgs import Orgs
from registry.metadata.peers import Peers
from registry.metadata.purges import Purges
from registry.metadata.quarantine import Quarantined
from registry.metadata.refs import Refs
from registry.metadata.repos import Repos
from registry.metadata.scans import Scans
from registry.metadata.search import SearchIndex
from registry.metadata.snapshot import SnapshotReads
from registry.metadata.state import NodeValues
from registry.metadata.xet import XetIndex


class Tx:
    def __init__(self, session: Session) -> None:
        self._session = session

    @cached_property
    def repos(self) -> Repos:
        return Repos(self._session)

    @cached_property
    def commits(self) -> Commits:
        return Commits(self._session)

    @cached_property
    def refs(self) -> Refs:
        return Refs(self._session)

    @cached_property
    def changes(self) -> ChangeLog:
        return ChangeLog(self._session, self.mirrors)

    @cached_property
    def discussions(self) -> Discussions:
        return Discussions(self._session)

    @cached_property
    def blobs(self) -> Blobs:
        return Blobs(self._session)

    @cached_property
    def quarantine(self) -> Quarantined:
        return Quarantined(self._session)

    @cached_property
    def scans(self) -> Scans:
        return Scans(self._session)

    @cached_property
    def model_hashes(self) -> ModelHashes:
        return ModelHashes(self._session)

    @cached_property
    def images(self) -> Images:
        return Images(self._session)

    @cached_property
    def access(self) -> AccessRequests:
        return AccessRequests(self._session)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self._session)

    @cached_property
    def orgs(self) -> Orgs:
        return Orgs(self._session)

    @cached_property
    def peers(self) -> Peers:
        return Peers(self._session)

    @cached_property
    def mirrors(self) -> Mirrors:
        return Mirrors(self._session)

    @cached_property
    def search(self) -> SearchIndex:
        return SearchIndex(self._session)

    @cached_property
    def leases(self) -> LeaseTable:
        return LeaseTable(self._session)

    @cached_property
    def values(self) -> NodeValues:
        return NodeValues(self._session)

    @cached_property
    def activity(self) -> Activity:
        return Activity(self._session)

    @cached_property
    def xet(self) -> XetIndex:
        return XetIndex(self._session)

    @cached_property
    def purges(self) -> Purges:
        return Purges(self._session)

    @cached_property
    def snapshot(self) -> SnapshotReads:
        return SnapshotReads(self._session)
