"""Where a repo lives besides this node, for its pages: its home (when another node is), the
peers this node replicates with that are up, and the mirrors holding the commit shown.

Read from local state only (peer health in memory, mirror records in the database), so a
replica's pages answer while the home is down, and say so: `home()` tells whether the home
is reachable and how long ago this node last heard from it. Peers are read as records plus
their health, not through `PeerService.views()`, which counts set-aside entries over the
whole change log (tens of milliseconds on a large node: too slow for every page view).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.patterns import covers
from registry.domain.records import PeerRecord, RepoRecord
from registry.metadata.db import Database
from registry.service.identity import NodeIdentity
from registry.service.peers import PeerService

HUB_URL = "https://huggingface.co"  # where an `hf` mirror with no url pushes


@dataclass(frozen=True)
class Home:
    """The other node a replica's repo is homed on, as this node sees it."""

    node: str
    url: str | None  # the home's base URL, when a peer record has it
    reachable: bool  # a peer with the home's node id is up
    age_seconds: float | None  # since this node last heard from it (None: not since start)


@dataclass(frozen=True)
class Place:
    kind: str  # home | peer | mirror
    name: str
    url: str | None  # the repo's page there, when one exists
    state: str = ""


class WhereaboutsService:
    def __init__(self, db: Database, node: NodeIdentity, peers: PeerService) -> None:
        self._db = db
        self._node = node
        self._peers = peers

    def home(self, repo: RepoRecord) -> Home | None:
        """The repo's home when it is another node (None: homed here)."""
        if repo.home_node == self._node.node_id:
            return None
        return self._home(repo, self._peers.all())

    def _home(self, repo: RepoRecord, peers: list[PeerRecord]) -> Home:
        direct = [p for p in peers if p.node_id == repo.home_node]
        return Home(
            repo.home_node,
            direct[0].url if direct else None,
            any(self._up(p) for p in direct),
            self._peers.copy_age(repo.home_node),
        )

    def _up(self, peer: PeerRecord) -> bool:
        return self._peers.health.get(peer.id).state == "up"

    def places(self, repo: RepoRecord, commit_id: str) -> list[Place]:
        """Where else the repo is: its home, peers that are up, and mirrors that hold
        `commit_id` (a private repo never leaves through a mirror)."""
        path = f"{repo.repo.type.url_prefix}{repo.repo.full_name}"
        peers = self._peers.all()
        found: list[Place] = []
        if repo.home_node != self._node.node_id:
            home = self._home(repo, peers)
            url = f"{home.url.rstrip('/')}/{path}" if home.url else None
            found.append(Place("home", home.node, url, "up" if home.reachable else "unreachable"))
        for peer in peers:
            if self._up(peer) and peer.node_id != repo.home_node:
                url = f"{peer.url.rstrip('/')}/{path}"
                found.append(Place("peer", peer.node_id or peer.id, url, "up"))
        return found + ([] if repo.private else self._mirrors(repo, commit_id, path))

    def _mirrors(self, repo: RepoRecord, commit_id: str, path: str) -> list[Place]:
        found = []
        with self._db.read() as tx:
            for mirror in tx.mirrors.all():
                if not covers(mirror.repos, repo.key):
                    continue
                if tx.mirrors.remote_commit(mirror.name, commit_id) is None:
                    continue  # not pushed there yet (or a bucket, which keeps no record)
                base = mirror.url or (HUB_URL if mirror.kind == "hf" else None)
                url = f"{base.rstrip('/')}/{path}" if base and base.startswith("http") else None
                found.append(Place("mirror", mirror.name, url, mirror.kind))
        return found
