"""The snapshot's compaction and line format, on plain data."""

from __future__ import annotations

import pytest

from registry.domain.changes import ChangeEntry
from registry.domain.errors import InvalidError
from registry.domain.snapshot import (
    Compaction,
    LineDigest,
    SnapshotHeader,
    entry_line,
    parse_header,
    parse_line,
    trailer_line,
)


def entry(serial: int, kind: str, body: dict[str, object], repo: str = "model/a/m") -> ChangeEntry:
    return ChangeEntry(serial, "A", serial, kind, repo, False, {"incarnation": "i1", **body}, 0)


def ref_set(serial: int, ref: str, version: int) -> ChangeEntry:
    return entry(serial, "ref.set", {"ref": ref, "commit": "c", "version": version})


def kept(entries: list[ChangeEntry]) -> list[int]:
    compaction = Compaction()
    for e in entries:
        compaction.note(e)
    return [e.serial for e in entries if compaction.keeps(e)]


def test_compaction_keeps_only_the_newest_move_of_each_ref() -> None:
    entries = [ref_set(1, "main", 1), ref_set(2, "dev", 2), ref_set(3, "main", 3)]
    assert kept(entries) == [2, 3]


def test_compaction_keeps_a_deleted_repos_creation_and_tombstone_only() -> None:
    entries = [
        entry(1, "repo.upsert", {"home": "A", "created_ms": 0}),
        entry(2, "commit.add", {"id": "c"}),
        ref_set(3, "main", 1),
        entry(4, "repo.delete", {}),
        entry(5, "commit.add", {"id": "d"}, repo="model/a/other"),
    ]
    assert kept(entries) == [1, 4, 5]


def test_compaction_keeps_entries_it_cannot_decode() -> None:
    entries = [entry(1, "ref.set", {"ref": "main"}), entry(2, "some.future.kind", {})]
    assert kept(entries) == [1, 2]


def test_lines_round_trip_and_the_digest_covers_every_line_before_the_trailer() -> None:
    header = SnapshotHeader("a", "e1", 7, "ab" * 32)
    e = ref_set(3, "main", 1)
    digest = LineDigest()
    lines = [digest.add(header.line()), digest.add(entry_line(e))]
    trailer = trailer_line(digest.lines - 1, digest.text())
    assert parse_header(lines[0]) == header
    assert parse_line(lines[1]) == e
    assert parse_line(trailer) == (1, digest.text())
    other = LineDigest()
    other.add(lines[0])
    other.add(lines[1].replace(b"main", b"mainx"))
    assert other.text() != digest.text()


def test_parse_refuses_what_is_not_a_snapshot() -> None:
    with pytest.raises(InvalidError):
        parse_header(b'{"snapshot": 99}\n')
    with pytest.raises(InvalidError):
        parse_line(b"not json\n")
    with pytest.raises(InvalidError):
        parse_line(b'{"unexpected": 1}\n')
