"""Reconstruction plans and streamed segments of a byte range, checked by rebuilding the bytes
of small synthetic files from fake xorbs of uncompressed (scheme 0) chunks: as a node streams
them (segments) and as a Xet client would from the v1 and v2 JSON (plan)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from registry.domain.errors import RangeNotSatisfiableError, XetInvalidError
from registry.domain.xet.reconstruct import Fetch, Plan, plan, segments, v1_body, v2_body
from registry.domain.xet.types import ChunkEntry, Term, XetHash

HEADER = 8


@dataclass
class Xorb:
    """A fake stored xorb: its bytes, its chunk list, and each chunk's decoded bytes."""

    hash: XetHash
    data: bytes
    chunks: list[ChunkEntry]
    payloads: list[bytes]


@dataclass
class File:
    terms: list[Term]
    xorbs: dict[XetHash, Xorb]
    data: bytes

    @property
    def chunks_of(self) -> dict[XetHash, list[ChunkEntry]]:
        return {h: x.chunks for h, x in self.xorbs.items()}


def header(length: int) -> bytes:
    """A scheme-0 chunk header: version 0, u24 payload length, scheme 0, u24 length."""
    return bytes([0]) + length.to_bytes(3, "little") + bytes([0]) + length.to_bytes(3, "little")


def make_xorb(rng: random.Random, lengths: Sequence[int]) -> Xorb:
    data, chunks, payloads = b"", [], []
    for length in lengths:
        payload = rng.randbytes(length)
        start = len(data)
        data += header(length) + payload
        chunks.append(ChunkEntry(XetHash(rng.randbytes(32)), start, len(data), length))
        payloads.append(payload)
    return Xorb(XetHash(rng.randbytes(32)), data, chunks, payloads)


def make_file(xorbs: Sequence[Xorb], spans: Sequence[tuple[int, int, int]]) -> File:
    """A file of terms (xorb index, chunk start, chunk end) over the given xorbs."""
    terms, data = [], b""
    for index, start, end in spans:
        xorb = xorbs[index]
        payload = b"".join(xorb.payloads[start:end])
        terms.append(Term(xorb.hash, start, end, len(payload)))
        data += payload
    return File(terms, {x.hash: x for x in xorbs}, data)


def random_file(rng: random.Random) -> File:
    """1-3 xorbs of 1-6 chunks of 1-6 bytes; 1-5 terms, repeating and overlapping ranges."""
    xorbs = [
        make_xorb(rng, [rng.randint(1, 6) for _ in range(rng.randint(1, 6))])
        for _ in range(rng.randint(1, 3))
    ]
    spans = []
    for _ in range(rng.randint(1, 5)):
        index = rng.randrange(len(xorbs))
        count = len(xorbs[index].chunks)
        start = rng.randrange(count)
        spans.append((index, start, rng.randint(start + 1, count)))
    return make_file(xorbs, spans)


def decode(data: bytes) -> list[bytes]:
    """The payloads of a run of serialized scheme-0 chunks, checking every header."""
    payloads, at = [], 0
    while at < len(data):
        head = data[at : at + HEADER]
        assert head[0] == 0 and head[4] == 0
        length = int.from_bytes(head[1:4], "little")
        assert int.from_bytes(head[5:8], "little") == length
        payloads.append(data[at + HEADER : at + HEADER + length])
        at += HEADER + length
    assert at == len(data)
    return payloads


def streamed(file: File, first: int, last: int | None, **limits: int) -> bytes:
    """The bytes a node streams: each segment read, decoded, skipped and taken."""
    out = b""
    for segment in segments(file.terms, file.chunks_of, len(file.data), first, last, **limits):
        xorb = file.xorbs[segment.xorb]
        payloads = decode(xorb.data[segment.byte_start : segment.byte_end])
        assert [len(p) for p in payloads] == [c.length for c in segment.chunks]
        assert segment.take > 0
        decoded = b"".join(payloads)
        out += decoded[segment.skip : segment.skip + segment.take]
    return out


# A fetched range of a xorb, as the client keeps it: its chunk range, its decoded chunks.
Fetched = dict[str, list[tuple[dict[str, int], list[bytes]]]]


def client_v1(file: File, body: dict[str, object], wanted: int) -> bytes:
    """What a Xet client rebuilds from a v1 answer: each fetch is one GET of its URL (here the
    xorb's hash) with its `url_range`; each term comes from a fetch that holds its chunks."""
    answer = json.loads(json.dumps(body))
    fetched: Fetched = {
        xorb: [
            (entry["range"], download(file, entry["url"], entry["url_range"])) for entry in entries
        ]
        for xorb, entries in answer["fetch_info"].items()
    }
    return assemble(answer, fetched, wanted)


def client_v2(file: File, body: dict[str, object], wanted: int) -> bytes:
    """What a Xet client rebuilds from a v2 answer: one GET of the xorb's URL per range."""
    answer = json.loads(json.dumps(body))
    fetched: Fetched = {}
    for xorb, entries in answer["xorbs"].items():
        (entry,) = entries
        starts = [r["chunks"]["start"] for r in entry["ranges"]]
        assert starts == sorted(starts)
        fetched[xorb] = [
            (r["chunks"], download(file, entry["url"], r["bytes"])) for r in entry["ranges"]
        ]
    return assemble(answer, fetched, wanted)


def download(file: File, url: str, byte_range: dict[str, int]) -> list[bytes]:
    """The decoded chunks of an inclusive byte range of the xorb a URL names."""
    data = file.xorbs[XetHash.parse(url)].data
    return decode(data[byte_range["start"] : byte_range["end"] + 1])


def assemble(answer: Any, fetched: Fetched, wanted: int) -> bytes:
    """Every term's chunks from a fetched range holding them, concatenated, then cut to the
    range asked for by dropping `offset_into_first_range` and keeping `wanted` bytes."""
    out = b""
    for term in answer["terms"]:
        start, end = term["range"]["start"], term["range"]["end"]
        held = [
            (chunks, payloads)
            for chunks, payloads in fetched[term["hash"]]
            if chunks["start"] <= start < end <= chunks["end"]
        ]
        assert held, f"no fetch holds term {term}"
        chunks, payloads = held[0]
        data = b"".join(payloads[start - chunks["start"] : end - chunks["start"]])
        assert len(data) == term["unpacked_length"]
        out += data
    offset = answer["offset_into_first_range"]
    assert offset < answer["terms"][0]["unpacked_length"]
    return out[offset : offset + wanted]


def check_fetches(file: File, result: Plan) -> None:
    """Per xorb, fetches ascending, neither overlapping nor touching, spanning their chunks;
    each xorb's fetches together in one group."""
    seen: list[XetHash] = []
    for fetch in result.fetches:
        if not seen or seen[-1] != fetch.xorb:
            assert fetch.xorb not in seen
            seen.append(fetch.xorb)
        chunks = file.xorbs[fetch.xorb].chunks
        assert fetch.byte_start == chunks[fetch.chunk_start].start
        assert fetch.byte_end == chunks[fetch.chunk_end - 1].end
    for previous, fetch in zip(result.fetches, result.fetches[1:], strict=False):
        if previous.xorb == fetch.xorb:
            assert previous.chunk_end < fetch.chunk_start


def check_range(file: File, first: int, last: int | None) -> None:
    size = len(file.data)
    expected = file.data[first : None if last is None else last + 1]
    result = plan(file.terms, file.chunks_of, size, first, last)
    check_fetches(file, result)
    assert sum(t.length for t in result.terms) - result.offset_into_first_range >= len(expected)
    v1 = v1_body(result, lambda fetch: fetch.xorb.hex)
    assert client_v1(file, v1, len(expected)) == expected
    v2 = v2_body(result, lambda xorb: xorb.hex)
    assert client_v2(file, v2, len(expected)) == expected
    assert streamed(file, first, last) == expected
    assert streamed(file, first, last, max_chunks=2, max_bytes=20) == expected


def test_reconstruct_rebuilds_every_range_of_random_files():
    rng = random.Random(20240611)
    ranges = 0
    for _ in range(60):
        file = random_file(rng)
        size = len(file.data)
        for first in range(size):
            for last in [*range(first, size + 2), None]:
                check_range(file, first, last)
                ranges += 1
    assert ranges > 10_000


def test_segments_stay_within_limits():
    rng = random.Random(7)
    for _ in range(200):
        file = random_file(rng)
        size = len(file.data)
        first = rng.randrange(size)
        limits = {"max_chunks": rng.randint(1, 4), "max_bytes": rng.randint(1, 40)}
        result = segments(file.terms, file.chunks_of, size, first, None, **limits)
        assert sum(s.take for s in result) == size - first
        for segment in result:
            assert len(segment.chunks) <= limits["max_chunks"]
            stored = segment.byte_end - segment.byte_start
            assert stored <= limits["max_bytes"] or len(segment.chunks) == 1


def test_segments_keep_a_term_in_one_read_when_within_limits():
    rng = random.Random(3)
    xorb = make_xorb(rng, [5] * 10)
    file = make_file([xorb], [(0, 0, 10)])
    # bytes 7..42: chunk 1 (bytes 5..9) to chunk 8 (bytes 40..44), 13 stored bytes each
    (segment,) = segments(file.terms, file.chunks_of, 50, 7, 42)
    assert (segment.byte_start, segment.byte_end) == (13, 117)
    assert segment.chunks == tuple(xorb.chunks[1:9])
    assert (segment.skip, segment.take) == (2, 36)


def test_segments_cut_a_term_at_max_chunks():
    rng = random.Random(3)
    file = make_file([make_xorb(rng, [4] * 130)], [(0, 0, 130)])
    result = segments(file.terms, file.chunks_of, 520, 0, None)
    assert [len(s.chunks) for s in result] == [64, 64, 2]
    assert streamed(file, 0, None) == file.data


def test_plan_is_one_term_and_fetch_for_a_single_chunk_file():
    rng = random.Random(5)
    xorb = make_xorb(rng, [9])
    file = make_file([xorb], [(0, 0, 1)])
    result = plan(file.terms, file.chunks_of, 9, 4, 6)
    assert result == Plan(4, (Term(xorb.hash, 0, 1, 9),), (Fetch(xorb.hash, 0, 1, 0, 17),))
    assert streamed(file, 4, 6) == file.data[4:7]


def test_plan_merges_overlapping_and_touching_terms_of_one_xorb():
    rng = random.Random(11)
    a, b = make_xorb(rng, [3] * 8), make_xorb(rng, [2] * 3)
    file = make_file([a, b], [(0, 4, 6), (1, 0, 3), (0, 0, 2), (0, 1, 4), (0, 7, 8), (0, 4, 5)])
    result = plan(file.terms, file.chunks_of, len(file.data), 0, None)
    ends = [c.end for c in a.chunks]
    assert result.fetches == (
        Fetch(a.hash, 0, 6, 0, ends[5]),
        Fetch(a.hash, 7, 8, ends[6], ends[7]),
        Fetch(b.hash, 0, 3, 0, len(b.data)),
    )
    check_range(file, 0, None)


def test_plan_trims_first_and_last_terms_to_the_range():
    rng = random.Random(13)
    a = make_xorb(rng, [10, 10, 10, 10])
    file = make_file([a], [(0, 0, 4), (0, 0, 4)])
    # bytes 25..54: chunk 2 of the first term to chunk 1 of the second
    result = plan(file.terms, file.chunks_of, 80, 25, 54)
    assert result.offset_into_first_range == 5
    assert result.terms == (Term(a.hash, 2, 4, 20), Term(a.hash, 0, 2, 20))
    assert result.fetches == (Fetch(a.hash, 0, 4, 0, len(a.data)),)


def test_plan_clips_last_beyond_the_end():
    rng = random.Random(17)
    file = random_file(rng)
    size = len(file.data)
    for first in range(size):
        whole = plan(file.terms, file.chunks_of, size, first, None)
        assert plan(file.terms, file.chunks_of, size, first, size + 1000) == whole
        assert plan(file.terms, file.chunks_of, size, first, size - 1) == whole


@pytest.mark.parametrize("first", [0, 1, 5])
@pytest.mark.parametrize("last", [None, 0, 9])
def test_reconstruct_refuses_any_range_when_the_file_is_empty(first, last):
    if last is not None and last < first:
        return
    for build in (plan, segments):
        with pytest.raises(RangeNotSatisfiableError) as caught:
            build([], {}, 0, first, last)
        assert caught.value.detail == {"size": 0}


def test_reconstruct_refuses_a_range_when_it_starts_at_or_past_the_end():
    rng = random.Random(19)
    file = random_file(rng)
    size = len(file.data)
    for first in (size, size + 1, size + 100):
        for build in (plan, segments):
            with pytest.raises(RangeNotSatisfiableError) as caught:
                build(file.terms, file.chunks_of, size, first, None)
            assert caught.value.detail == {"size": size}


def test_reconstruct_rejects_a_reversed_range():
    rng = random.Random(23)
    file = random_file(rng)
    with pytest.raises(ValueError):
        plan(file.terms, file.chunks_of, len(file.data), 1, 0)


XORB = make_xorb(random.Random(29), [4, 4, 4])
STRANGER = XetHash(bytes(range(32)))


@pytest.mark.parametrize(
    ("terms", "size"),
    [
        pytest.param([Term(XORB.hash, 2, 4, 8)], 8, id="chunks past the xorb"),
        pytest.param(
            [Term(XORB.hash, 0, 1, 4), Term(XORB.hash, 1, 1, 0), Term(XORB.hash, 1, 2, 4)],
            8,
            id="no chunks",
        ),
        pytest.param([Term(XORB.hash, 0, 2, 9)], 9, id="wrong length"),
        pytest.param([Term(STRANGER, 0, 1, 4)], 4, id="unknown xorb"),
        pytest.param([Term(XORB.hash, 0, 1, 4)], 5, id="terms shorter than the file"),
        pytest.param([Term(XORB.hash, 0, 3, 12)], 11, id="terms longer than the file"),
    ],
)
def test_reconstruct_rejects_terms_when_they_disagree_with_their_xorbs(terms, size):
    for build in (plan, segments):
        with pytest.raises(XetInvalidError):
            build(terms, {XORB.hash: XORB.chunks}, size, 0, size - 1)


def test_v1_body_uses_the_client_field_names():
    xorb = XetHash.parse("ab" * 32)
    result = Plan(3, (Term(xorb, 2, 5, 70),), (Fetch(xorb, 2, 5, 100, 190),))
    assert v1_body(result, lambda fetch: f"u/{fetch.byte_start}") == {
        "offset_into_first_range": 3,
        "terms": [{"hash": "ab" * 32, "unpacked_length": 70, "range": {"start": 2, "end": 5}}],
        "fetch_info": {
            "ab" * 32: [
                {
                    "range": {"start": 2, "end": 5},
                    "url": "u/100",
                    "url_range": {"start": 100, "end": 189},
                }
            ]
        },
    }


def test_v2_body_lists_every_range_of_a_xorb_under_one_url():
    xorb = XetHash.parse("cd" * 32)
    result = Plan(
        0,
        (Term(xorb, 0, 2, 10), Term(xorb, 4, 5, 3)),
        (Fetch(xorb, 0, 2, 0, 30), Fetch(xorb, 4, 5, 60, 71)),
    )
    assert v2_body(result, lambda h: f"x/{h.hex[:4]}") == {
        "offset_into_first_range": 0,
        "terms": [
            {"hash": "cd" * 32, "unpacked_length": 10, "range": {"start": 0, "end": 2}},
            {"hash": "cd" * 32, "unpacked_length": 3, "range": {"start": 4, "end": 5}},
        ],
        "xorbs": {
            "cd" * 32: [
                {
                    "url": "x/cdcd",
                    "ranges": [
                        {"chunks": {"start": 0, "end": 2}, "bytes": {"start": 0, "end": 29}},
                        {"chunks": {"start": 4, "end": 5}, "bytes": {"start": 60, "end": 70}},
                    ],
                }
            ]
        },
    }
