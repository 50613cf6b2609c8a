"""The snapshot a node hands a joining peer: its format, its digest, and what it leaves out.

A snapshot at serial N is the node's change log up to N (abandoned entries left out, private
ones only for readers who may see them) with the entries that no longer say anything dropped:
ref moves a later move of the same ref superseded, settings later settings superseded, and
what a deleted incarnation held (its creation and its tombstone stay, so a late entry of it
is still refused). Every kept entry keeps its origin, origin serial and chain, so the joining
node logs exactly what it would have logged by replaying, minus the dead weight.

On the wire it is NDJSON: a header line, one line per entry, a trailer line. The trailer's
digest is the BLAKE3 of every byte before it; the receiver checks it (and the count) before
anything it read becomes visible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import blake3

from registry.domain.changes import (
    ChangeEntry,
    RefDelete,
    RefSet,
    RepoDelete,
    RepoSettings,
    RepoUpsert,
    UnknownChange,
)
from registry.domain.errors import InvalidError

FORMAT = 1
_LIFE = (RepoUpsert.KIND, RepoDelete.KIND)  # what stays of a deleted incarnation
_SUPERSEDED = (RefSet.KIND, RefDelete.KIND, RepoSettings.KIND)  # a later one says it all


@dataclass(frozen=True)
class SnapshotHeader:
    """Whose snapshot, and where the feed goes on after it (the reader's cursor and chain)."""

    node_id: str
    epoch: str
    serial: int
    chain: str | None

    def line(self) -> bytes:
        fields = {"snapshot": FORMAT, **self.__dict__}
        return _line(fields)


def trailer_line(entries: int, digest: str) -> bytes:
    return _line({"end": True, "entries": entries, "digest": digest})


def entry_line(entry: ChangeEntry) -> bytes:
    return _line(entry.__dict__)


def parse_header(line: bytes) -> SnapshotHeader:
    """Raises InvalidError for a line that is not a snapshot header of this format."""
    fields = _parse(line)
    if fields.get("snapshot") != FORMAT:
        raise InvalidError("Not a snapshot of a format this node reads")
    chain = fields.get("chain")
    try:
        return SnapshotHeader(
            str(fields["node_id"]),
            str(fields["epoch"]),
            int(fields["serial"]),
            None if chain is None else str(chain),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidError(f"A snapshot header lacks a field: {exc}") from exc


def parse_line(line: bytes) -> ChangeEntry | tuple[int, str]:
    """An entry, or the trailer as (entries, digest). Raises InvalidError for anything else."""
    fields = _parse(line)
    if fields.get("end") is True:
        try:
            return int(fields["entries"]), str(fields["digest"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidError(f"A snapshot trailer lacks a field: {exc}") from exc
    try:
        return ChangeEntry(**fields)
    except TypeError as exc:
        raise InvalidError(f"A snapshot line is not a change entry: {exc}") from exc


class LineDigest:
    """The running BLAKE3 of the lines before the trailer, as the trailer names it."""

    def __init__(self) -> None:
        self._hash = blake3.blake3()
        self.lines = 0

    def add(self, line: bytes) -> bytes:
        self._hash.update(line)
        self.lines += 1
        return line

    def text(self) -> str:
        return f"blake3:{self._hash.hexdigest()}"


class Compaction:
    """Pass one reads the entries up to N of the kinds `NOTED` and notes what supersedes
    what; pass two asks `keeps` of every entry. Memory grows with the refs and repos held, not
    with the history."""

    NOTED = (*_SUPERSEDED, RepoDelete.KIND)  # the kinds `note` learns anything from

    def __init__(self) -> None:
        self._last: dict[tuple[str, ...], int] = {}  # superseding key -> newest serial
        self._dead: set[tuple[str, str, str]] = set()  # (origin, repo, incarnation) deleted

    def note(self, entry: ChangeEntry) -> None:
        key = _key(entry)
        if key is not None:
            self._last[key] = entry.serial
        if entry.kind == RepoDelete.KIND:
            incarnation = entry.body.get("incarnation")
            self._dead.add((entry.origin, entry.repo, str(incarnation)))

    def keeps(self, entry: ChangeEntry) -> bool:
        incarnation = entry.body.get("incarnation")
        if (entry.origin, entry.repo, str(incarnation)) in self._dead:
            return entry.kind in _LIFE
        key = _key(entry)
        return key is None or self._last.get(key) == entry.serial


def _key(entry: ChangeEntry) -> tuple[str, ...] | None:
    """What a later entry of the same key supersedes: a ref's moves, a repo's settings."""
    if entry.kind not in _SUPERSEDED:
        return None  # most entries: not decoded at all (a commit's tree is long)
    try:
        change = entry.change()
    except InvalidError:
        return None
    if isinstance(change, UnknownChange):
        return None
    if isinstance(change, RefSet | RefDelete):
        return ("ref", entry.origin, entry.repo, change.incarnation, change.ref)
    if isinstance(change, RepoSettings):
        return ("settings", entry.origin, entry.repo, change.incarnation)
    return None


def _line(fields: Mapping[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _parse(line: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(line)
    except ValueError as exc:
        raise InvalidError(f"A snapshot line is not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise InvalidError("A snapshot line is not a JSON object")
    return fields
