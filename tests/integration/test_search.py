"""Search never hides an upload: the same answers with the indexer stopped, halfway and done.

The fixture is 240 generated repos; every expectation is computed from the fixture's own
definition (an oracle independent of the node), and checked before any indexing (every repo
found by the direct query), with the index half built (both paths merged) and when current.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi

from registry.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, RunningNode, ServerThread, node_settings
from tests.hub import create_with_files

KINDS = ["checkpoint", "lora", "embedding", "vae", "controlnet", "workflow"]
BASES = ["SD 1.5", "SDXL 1.0", "Pony", "Flux.1 D"]
AUTHORS = ["alice", "bob", "carol", "dave"]
ANIMALS = ["dragon", "tiger", "heron", "otter", "lynx", "mantis", "orca", "falcon"]
STYLES = ["anime", "photo", "ink", "pixel", "watercolor"]
COUNT = 240


@dataclass(frozen=True)
class Spec:
    i: int
    author: str
    name: str
    kind: str
    base: str
    tags: tuple[str, ...]
    trigger: str
    description: str
    private: bool

    @property
    def id(self) -> str:
        return f"{self.author}/{self.name}"

    def card(self) -> bytes:
        tags = ", ".join(self.tags)
        return (
            f"---\nkind: {self.kind}\nbase_model: {self.base}\ntags: [{tags}]\n"
            f"trigger_words: [{self.trigger}]\nlicense: openrail\n---\n"
            f"# {self.name}\n\n{self.description}\n"
        ).encode()

    def words(self) -> set[str]:
        text = " ".join([self.author, self.name, self.description, *self.tags, self.trigger])
        return set(re.findall(r"[a-z0-9]+", text.lower()))

    def has(self, query: str) -> bool:
        """Every query word starts some word of the repo (search matches prefixes)."""
        return all(any(w.startswith(q) for w in self.words()) for q in query.lower().split())


def spec(i: int) -> Spec:
    animal = ANIMALS[i % len(ANIMALS)]
    style = STYLES[(i // 3) % len(STYLES)]
    return Spec(
        i=i,
        author=AUTHORS[i % len(AUTHORS)],
        name=f"{animal}-{style}-{i:03d}",
        kind=KINDS[i % len(KINDS)],
        base=BASES[(i // 2) % len(BASES)],
        tags=(style, f"set{i % 10}"),
        trigger=f"trg{i:03d}",
        description=f"A {style} model of a {animal}, number {i}, made for the fixture.",
        private=i % 17 == 0,
    )


SPECS = [spec(i) for i in range(COUNT)]


def expected(principal: str | None, keep: Callable[[Spec], bool]) -> list[str]:
    """Ids in the order search returns them by default (newest first)."""
    visible = [s for s in SPECS if not s.private or principal in ("admin", s.author)]
    return [s.id for s in reversed(visible) if keep(s)]


# (query parameters, predicate) pairs: name, tag, trigger word, description and the filters.
CASES: list[tuple[dict[str, str | list[str]], Callable[[Spec], bool]]] = [
    ({"q": "dragon"}, lambda s: "dragon" in s.name),
    ({"q": "OTTER ink"}, lambda s: s.has("otter ink")),
    ({"q": "falc"}, lambda s: "falcon" in s.name),  # prefix
    ({"q": "trg123"}, lambda s: s.trigger == "trg123"),
    ({"q": "number 42"}, lambda s: s.has("number 42")),
    ({"q": "fixture"}, lambda _: True),
    ({"tag": "pixel"}, lambda s: "pixel" in s.tags),
    ({"tag": ["watercolor", "set3"]}, lambda s: {"watercolor", "set3"} <= set(s.tags)),
    ({"kind": "lora"}, lambda s: s.kind == "lora"),
    ({"kind": "LoRA", "q": "tiger"}, lambda s: s.kind == "lora" and "tiger" in s.name),
    ({"base_model": "sdxl 1.0"}, lambda s: s.base == "SDXL 1.0"),
    ({"base_model": "Flux.1 D", "kind": "vae"}, lambda s: s.base == "Flux.1 D" and s.kind == "vae"),
    ({"author": "bob"}, lambda s: s.author == "bob"),
    ({"author": "carol", "q": "heron"}, lambda s: s.author == "carol" and "heron" in s.name),
    ({"q": "nosuchword"}, lambda _: False),
]


def search_all(
    http: httpx.Client, params: dict[str, str | list[str]]
) -> tuple[list[str], dict[str, Any]]:
    """Every page of a search (limit 50), and the last page's index report."""
    ids: list[str] = []
    offset: int | None = 0
    index: dict[str, Any] = {}
    while offset is not None:
        page = http.get("/v1/search", params={**params, "limit": 50, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [hit["id"] for hit in body["results"]]
        offset, index = body["next_offset"], body["index"]
    return ids, index


def check_cases(node_url: str, tokens: dict[str, str]) -> list[dict[str, Any]]:
    reports = []
    for who in (None, "carol", "admin"):
        with httpx.Client(base_url=node_url, timeout=30) as http:
            if who is not None:
                http.headers["authorization"] = f"Bearer {tokens[who]}"
            for params, keep in CASES:
                ids, index = search_all(http, params)
                assert ids == expected(who, keep), (who, params)
                reports.append(index)
    return reports


@contextmanager
def manual_node(data_dir: Path) -> Iterator[tuple[Runtime, str]]:
    """A served node whose indexer does not run by itself: the test calls it."""
    node = Runtime.open(node_settings(data_dir, index={"enabled": False}))
    node.boot()
    server = ServerThread(node.app())
    server.start()
    try:
        yield node, server.url
    finally:
        server.stop()
        node.close()


@pytest.fixture
def fixture_node(tmp_path: Path) -> Iterator[tuple[Runtime, str, dict[str, str]]]:
    """240 repos on a node whose indexer has not run."""
    with manual_node(tmp_path / "n") as (node, url):
        tokens = {"admin": ADMIN_TOKEN, "carol": node.auth.create_token("carol", write=True)}
        with httpx.Client(base_url=url, timeout=30) as http:
            http.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            for s in SPECS:
                create_with_files(http, s.id, {"README.md": s.card()}, private=s.private)
        yield node, url, tokens


def test_search_over_240_repos_is_complete_and_ordered_before_during_and_after_indexing(
    fixture_node: tuple[Runtime, str, dict[str, str]],
) -> None:
    """One fixture (building it is most of the time): the cases before any indexing, then with
    the index half built (both paths merged) the cases, each sort and paging, then current."""
    node, url, tokens = fixture_node
    # Nothing indexed: every answer comes from the direct query, and the lag says so.
    reports = check_cases(url, tokens)
    assert all(r["pending_repos"] == COUNT and r["behind_entries"] > 0 for r in reports)
    assert all(r["indexed_serial"] == 0 and r["complete"] for r in reports)
    # Half indexed: answers merge both paths and are the same.
    consumed = 0
    while consumed < node.db.head_serial() // 2:
        consumed += node.indexer.run_once(batch=97)
    reports = check_cases(url, tokens)
    assert all(0 < r["pending_repos"] < COUNT for r in reports)
    check_sorts(node, url)
    # Current: the index answers alone.
    while node.indexer.run_once(batch=500):
        pass
    reports = check_cases(url, tokens)
    assert all(r["pending_repos"] == 0 and r["behind_entries"] == 0 for r in reports)
    with httpx.Client(base_url=url) as http:
        hits = http.get("/v1/search", params={"q": "dragon", "limit": 5}).json()["results"]
    assert hits and all(h["indexed"] for h in hits)
    assert hits[0]["kind"] in KINDS and hits[0]["trigger_words"][0].startswith("trg")


def check_sorts(node: Runtime, url: str) -> None:
    """Results ordered by each sort and paged without repeats."""
    # Downloads follow redirects: a node whose blobs are in S3 redirects them to the bucket.
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as http:
        for _ in range(3):
            http.get(f"/{SPECS[5].id}/resolve/main/README.md").raise_for_status()
        http.get(f"/{SPECS[9].id}/resolve/main/README.md").raise_for_status()
        node.downloads.flush()
        ids, _ = search_all(http, {"sort": "downloads"})
        assert ids[:2] == [SPECS[5].id, SPECS[9].id]
        created, _ = search_all(http, {"sort": "created"})
        assert created == expected(None, lambda _: True)
        assert len(set(ids)) == len(ids) == len(created)
        bad = http.get("/v1/search", params={"sort": "stars"})
        assert bad.status_code == 422 and bad.headers["X-Error-Code"] == "BadRequest"


def test_fresh_upload_is_found_at_once_with_the_indexer_stopped_then_indexed_on_restart(
    start_node: Callable[..., RunningNode],
) -> None:
    stopped = start_node("n", index={"enabled": False})
    api = HfApi(endpoint=stopped.url, token=stopped.admin_token)
    api.create_repo("admin/brand-new-lora")
    card = b"---\nkind: lora\ntags: [freshtag]\ntrigger_words: [zqxword]\n---\nJust uploaded.\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="admin/brand-new-lora")
    with stopped.client() as http:
        for params in ({"q": "brand new"}, {"q": "zqxword"}, {"tag": "freshtag"}):
            body = http.get("/v1/search", params=params).json()
            assert [h["id"] for h in body["results"]] == ["admin/brand-new-lora"], params
            assert body["results"][0]["indexed"] is False
            assert body["index"]["pending_repos"] == 1 and body["index"]["behind_entries"] >= 4
        listing = http.get("/api/models", params={"search": "brand"})
        assert listing.headers["X-Modelyard-Index-Behind"] != "0"
    assert [m.id for m in api.list_models(search="brand")] == ["admin/brand-new-lora"]
    assert [m.id for m in api.list_models(filter="freshtag")] == ["admin/brand-new-lora"]
    assert [m.id for m in api.list_models()] == ["admin/brand-new-lora"]
    info = api.model_info("admin/brand-new-lora")
    meta = info.modelyard  # type: ignore[attr-defined]  # kept by ModelInfo from the JSON
    assert meta["kind"] == "lora" and meta["trigger_words"] == ["zqxword"]
    stopped.server.stop()

    restarted = start_node("n", index={"enabled": True, "interval": 0.05})
    with restarted.client() as http:
        deadline = time.monotonic() + 20
        while (
            http.get("/v1/search/status").json()["behind_entries"] and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        status = http.get("/v1/search/status").json()
        assert status["behind_entries"] == 0 and status["pending_repos"] == 0
        hits = http.get("/v1/search", params={"q": "zqxword"}).json()["results"]
        assert [(h["id"], h["indexed"]) for h in hits] == [("admin/brand-new-lora", True)]
        assert (
            http.get("/api/models", params={"search": "x"}).headers["X-Modelyard-Index-Behind"]
            == "0"
        )


def test_deleted_and_changed_repos_leave_no_stale_answers(tmp_path: Path) -> None:
    with manual_node(tmp_path / "n") as (node, url):
        api = HfApi(endpoint=url, token=ADMIN_TOKEN)
        for name in ("keep-me", "drop-me"):
            api.create_repo(f"admin/{name}")
            api.upload_file(
                path_or_fileobj=b"---\ntags: [oldtag]\n---\n",
                path_in_repo="README.md",
                repo_id=f"admin/{name}",
            )
        while node.indexer.run_once():
            pass
        api.delete_repo("admin/drop-me")
        api.upload_file(
            path_or_fileobj=b"---\ntags: [newtag]\n---\n",
            path_in_repo="README.md",
            repo_id="admin/keep-me",
        )
        with httpx.Client(base_url=url) as http:
            for indexed in (False, True):  # stale index rows, then the index caught up
                assert ids_of(http, {"tag": "oldtag"}) == [], indexed
                assert ids_of(http, {"tag": "newtag"}) == ["admin/keep-me"], indexed
                assert ids_of(http, {"q": "drop"}) == [], indexed
                while node.indexer.run_once():
                    pass


def ids_of(http: httpx.Client, params: dict[str, str]) -> list[str]:
    return [h["id"] for h in http.get("/v1/search", params=params).json()["results"]]


def test_lazy_replica_completes_a_document_once_the_card_is_stored_there(
    start_node: Callable[..., RunningNode],
) -> None:
    home = start_node("home")
    replica = start_node("replica", index={"enabled": False}, sync={"long_poll": 2})
    with replica.client(ADMIN_TOKEN) as http:
        peer = {"url": home.url, "token": ADMIN_TOKEN, "blobs": "lazy"}
        assert http.post("/v1/peers", json=peer).status_code == 201
    api = HfApi(endpoint=home.url, token=ADMIN_TOKEN)
    api.create_repo("admin/lazy-card")
    card = b"---\nkind: lora\ntags: [lazytag]\n---\nA card the replica reads late.\n"
    commit = api.upload_file(
        path_or_fileobj=card, path_in_repo="README.md", repo_id="admin/lazy-card"
    ).oid
    copy = HfApi(endpoint=replica.url, token=ADMIN_TOKEN)
    deadline = time.monotonic() + 20
    while not (
        copy.repo_exists("admin/lazy-card") and copy.model_info("admin/lazy-card").sha == commit
    ):
        assert time.monotonic() < deadline, "not replicated in time"
        time.sleep(0.05)
    indexer = replica.runtime.indexer
    with replica.client() as http:
        # The card is not stored on the replica yet: found by name, not by what the card says.
        assert ids_of(http, {"q": "lazy card"}) == ["admin/lazy-card"]
        assert ids_of(http, {"tag": "lazytag"}) == []
        while indexer.run_once():
            pass
        assert ids_of(http, {"tag": "lazytag"}) == []
        http.get("/admin/lazy-card/resolve/main/README.md").raise_for_status()  # stored now
        assert indexer.run_once() == 0  # nothing new in the log: the idle pass re-reads it
        hits = http.get("/v1/search", params={"tag": "lazytag"}).json()["results"]
    assert [(h["id"], h["indexed"], h["kind"]) for h in hits] == [("admin/lazy-card", True, "lora")]


def test_a_common_filter_walks_the_sort_order_and_a_rare_one_starts_from_its_matches(
    start_node: Callable[..., RunningNode],
) -> None:
    """Both ways a filtered search runs (metadata/search.py `_narrow`): more repos than NARROW
    under one author (the sort order is walked), one under another (its matches are sorted);
    the answers are the same shape and order either way."""
    from registry.domain.access import CONSOLE
    from registry.domain.names import RepoId, RepoType
    from registry.domain.search import SearchQuery
    from registry.metadata.search import NARROW

    node = start_node("narrow", index={"enabled": False})  # only this test indexes
    runtime = node.runtime
    for n in range(NARROW + 5):
        runtime.repos.create(CONSOLE, RepoId(RepoType.MODEL, "admin", f"m{n:04d}"), private=False)
    runtime.auth.create_token("rare", write=True)
    runtime.repos.create(CONSOLE, RepoId(RepoType.MODEL, "rare", "only"), private=False)
    while runtime.indexer.run_once(batch=2000):
        pass
    common = runtime.services.search.search(
        CONSOLE, SearchQuery(author="admin", sort="created", limit=3)
    )
    assert [f"{h.doc.namespace}/{h.doc.name}" for h in common.hits] == [
        "admin/m0504",
        "admin/m0503",
        "admin/m0502",
    ]
    assert common.more and common.lag.behind_entries == 0
    rare = runtime.services.search.search(CONSOLE, SearchQuery(author="rare", limit=3))
    assert [f"{h.doc.namespace}/{h.doc.name}" for h in rare.hits] == ["rare/only"] and not rare.more
