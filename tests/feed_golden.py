"""The change feed's golden recording: the exchanges stored, how their volatile values are
normalised, and the check that commit ids derive from the commit bodies.

Theory of operation: a recording is a list of exchanges (one `GET /v1/sync/changes` each:
status, the headers of the feed protocol, the exact body bytes). Two fixtures hold it:
`golden/feed_scenario.raw.json` keeps the bytes as served, `golden/feed_scenario.json` the same
bytes normalised. Normalising replaces, in the body text itself, only values that are random or
time-dependent by nature; every other byte (key names and order, spacing, types, list shapes,
serials, hashes, sizes) stays as served, so comparing normalised bytes holds the wire format.

- Ids (commit ids, which hash the commit time; repo incarnations and node epochs, uuid4;
  history chains, which hash all of those) are
  found by key in the parsed body, checked against their shape, and replaced by
  `<commit-N>` / `<incarnation-N>` / `<epoch-N>`, N counting distinct values in order of first
  appearance across the whole recording: every occurrence of one value (a ref pointing at a
  commit, a parent, a relayed entry) gets the same placeholder, so which entry points at which
  commit is held too.
- Discussion event ids (random, 24 hex, at key `id`) become `<event-N>` the same way.
- Millisecond times become `<ms>` at every occurrence, not one placeholder per distinct value:
  two writes in the same millisecond are a coincidence of the clock, and numbering would make
  that coincidence part of the format. What the commit time feeds (the commit id) is held by
  `check_commit_ids` on the raw bytes instead.
- A value at a volatile key that does not have its shape (a 40-hex id that became 64-hex, a
  time that became a string) is left as it is, so the comparison shows it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import Digest

GOLDEN_DIR = Path(__file__).parent / "golden"
NORMALISED_FIXTURE = GOLDEN_DIR / "feed_scenario.json"
RAW_FIXTURE = GOLDEN_DIR / "feed_scenario.raw.json"

# The response headers of the feed protocol kept in a recording (names lower-case).
KEPT_HEADERS = (
    "content-type",
    "x-modelyard-node",
    "x-modelyard-epoch",
    "x-modelyard-serial",
    "x-error-code",
    "x-registry-error",
)
# Key (anywhere in a body) -> the kind of volatile value it holds.
VOLATILE_KEYS = {
    "epoch": "epoch",
    "incarnation": "incarnation",
    "id": "commit",
    "parent": "commit",
    "commit": "commit",
    "base": "commit",
    "merge_commit": "commit",
    "oid": "commit",
    "commits": "commit",  # a list of them
    "created_ms": "ms",
    "edited_ms": "ms",
    "chain": "chain",
    "last_chain": "chain",
}
VOLATILE_HEADERS = {"x-modelyard-epoch": "epoch"}
_SHAPES = {
    "epoch": re.compile(r"[0-9a-f]{32}"),
    "incarnation": re.compile(r"[0-9a-f]{32}"),
    "commit": re.compile(r"[0-9a-f]{40}"),
    "event": re.compile(r"[0-9a-f]{24}"),  # a discussion event's id (random)
    "chain": re.compile(r"[0-9a-f]{64}"),
}
# Entries start here in a page; the stored body is split there so a fixture diff reads per entry.
_ENTRY_START = re.compile(r'(?=\{"serial":)')


@dataclass(frozen=True)
class Exchange:
    """One feed request and its answer as served."""

    name: str  # what was asked, by whom: "a/admin/since=0"
    request: dict[str, Any]  # node, reader, params, headers sent
    status: int
    headers: dict[str, str]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        text = self.body.decode("utf-8")
        return {
            "name": self.name,
            "request": self.request,
            "status": self.status,
            "headers": self.headers,
            "body": [part for part in _ENTRY_START.split(text) if part],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Exchange:
        body = "".join(data["body"]).encode("utf-8")
        return cls(data["name"], data["request"], data["status"], data["headers"], body)


def save(path: Path, exchanges: list[Exchange], about: str) -> None:
    document = {"about": about, "exchanges": [e.to_json() for e in exchanges]}
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load(path: Path) -> list[Exchange]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return [Exchange.from_json(e) for e in document["exchanges"]]


class Normaliser:
    """Maps volatile values to placeholders, consistently across every exchange it is given."""

    def __init__(self) -> None:
        self._placeholders: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def exchanges(self, exchanges: list[Exchange]) -> list[Exchange]:
        return [self.exchange(e) for e in exchanges]

    def exchange(self, exchange: Exchange) -> Exchange:
        headers = {}
        for name, value in exchange.headers.items():
            kind = VOLATILE_HEADERS.get(name)
            headers[name] = self._placeholder(kind, value) if kind else value
        text = exchange.body.decode("utf-8")
        found: dict[str, str] = {}
        if exchange.headers.get("content-type", "").startswith("application/json"):
            self._collect(json.loads(text), found)
        return Exchange(
            exchange.name, exchange.request, exchange.status, headers, _replace(text, found)
        )

    def _collect(self, value: Any, found: dict[str, str]) -> None:
        """Walk a parsed body in text order; note each volatile value's placeholder."""
        if isinstance(value, list):
            for item in value:
                self._collect(item, found)
        elif isinstance(value, dict):
            for key, item in value.items():
                kind = VOLATILE_KEYS.get(key)
                if key == "id" and isinstance(item, str) and _SHAPES["event"].fullmatch(item):
                    kind = "event"
                if kind == "ms" and type(item) is int and len(str(item)) == 13:
                    found[str(item)] = "<ms>"
                elif kind and kind != "ms" and isinstance(item, str | list):
                    for value in item if isinstance(item, list) else [item]:
                        if isinstance(value, str) and _SHAPES[kind].fullmatch(value):
                            found[value] = self._placeholder(kind, value)
                else:
                    self._collect(item, found)

    def _placeholder(self, kind: str, value: str) -> str:
        if not _SHAPES[kind].fullmatch(value):
            return value  # not the shape it should have: keep it, the comparison shows it
        if value not in self._placeholders:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._placeholders[value] = f"<{kind}-{self._counts[kind]}>"
        return self._placeholders[value]


def _replace(text: str, found: dict[str, str]) -> bytes:
    """Every whole-token occurrence of a found value replaced, in one pass (so a placeholder is
    never rewritten again); quotes around a value stay, so its JSON type stays visible."""
    if not found:
        return text.encode("utf-8")
    alternatives = "|".join(re.escape(v) for v in sorted(found, key=len, reverse=True))
    pattern = re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])")
    return pattern.sub(lambda m: found[m.group()], text).encode("utf-8")


def feed_entries(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """The entries of every successful page, as parsed."""
    pages = [json.loads(e.body) for e in exchanges if e.status == 200]
    return [entry for page in pages for entry in page["entries"]]


def check_commit_ids(entries: list[dict[str, Any]]) -> int:
    """Assert each `commit.add` entry's id is `commit_id` of its own body; returns how many."""
    checked = 0
    for entry in entries:
        if entry["kind"] != "commit.add":
            continue
        body = entry["body"]
        tree = [
            TreeEntry(path, Digest(b3), sha256, size, lfs, git_sha1)
            for path, b3, sha256, size, lfs, git_sha1 in body["tree"]
        ]
        derived = commit_id(
            repo_key=entry["repo"],
            incarnation=body["incarnation"],
            parent=body["parent"],
            author=body["author"],
            title=body["title"],
            message=body["message"],
            created_ms=body["created_ms"],
            tree=tree,
        )
        assert derived == body["id"], f"serial {entry['serial']}: id not derived from its body"
        checked += 1
    return checked


def first_difference(expected: bytes, actual: bytes, context: int = 120) -> str:
    """Where two byte strings part, with some context: long one-line bodies diff badly."""
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
        min(len(expected), len(actual)),
    )
    start = max(0, at - context)
    return (
        f"first difference at byte {at} (lengths {len(expected)} vs {len(actual)}):\n"
        f"  recorded: ...{expected[start : at + context]!r}\n"
        f"  replayed: ...{actual[start : at + context]!r}"
    )
