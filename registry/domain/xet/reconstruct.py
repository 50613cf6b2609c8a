"""What to read of stored xorbs to rebuild a byte range of a Xet file: the reconstruction
answer a Xet client fetches itself (`plan`, `v1_body`, `v2_body`), and the bounded reads a
node streams to a plain HTTP client (`segments`).

Theory of operation. A file is its terms in order; each term is a run of chunks of one
xorb, and each stored xorb has a chunk list giving every chunk's physical [start, end) in
the xorb (header and payload) and its uncompressed length. For an inclusive byte range
[first, last] the terms overlapping it are kept, the first and last trimmed to the chunks
that overlap it (`_pieces`). Both consumers start from those pieces:

- `plan` names the pieces as terms and merges, per xorb, the chunk ranges they need into
  ascending, disjoint fetches (overlapping or touching ranges become one), so a client
  reads each stored byte once. `offset_into_first_range` is how far `first` lies into the
  first kept chunk; the client trims the tail itself from the length it asked for.
- `segments` cuts each piece into runs of at most `max_chunks` chunks and about
  `max_bytes` stored bytes, each one storage read, and says how much of the decoded run to
  drop at the front and keep, so a server holds one segment at a time.

The recipe was verified at upload; the checks here (term lengths add up to the file size, a
kept term's chunks lie in its xorb and add up to its length) guard against metadata that
disagrees with itself, and raise `XetInvalidError`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from registry.domain.errors import RangeNotSatisfiableError, XetInvalidError
from registry.domain.xet.types import ChunkEntry, Term, XetHash

SEGMENT_CHUNKS = 64
SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Fetch:
    """Chunks [chunk_start, chunk_end) of a stored xorb, whose serialized bytes are
    [byte_start, byte_end) of it: one range a client downloads."""

    xorb: XetHash
    chunk_start: int
    chunk_end: int
    byte_start: int
    byte_end: int

    @property
    def last_byte(self) -> int:
        """The inclusive end, as HTTP `Range` and the reconstruction JSON write it."""
        return self.byte_end - 1


@dataclass(frozen=True, slots=True)
class Plan:
    """A reconstruction answer before URLs: the kept terms (first and last trimmed) and the
    fetches that cover them, grouped by xorb in order of first use, ascending within one."""

    offset_into_first_range: int
    terms: tuple[Term, ...]
    fetches: tuple[Fetch, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One storage read for a streamed range: read [byte_start, byte_end) of the xorb, decode
    `chunks` in order, drop `skip` bytes of their concatenation and send the next `take`."""

    xorb: XetHash
    byte_start: int
    byte_end: int
    chunks: tuple[ChunkEntry, ...]
    skip: int
    take: int


@dataclass(frozen=True, slots=True)
class _Piece:
    """A kept term, trimmed: the term, its chunks, and the file offset of its first byte."""

    term: Term
    chunks: Sequence[ChunkEntry]
    offset: int


def plan(
    terms: Sequence[Term],
    chunks_of: Mapping[XetHash, Sequence[ChunkEntry]],
    size: int,
    first: int,
    last: int | None,
) -> Plan:
    """The reconstruction of bytes [first, last] of a file.

    Args:
        terms: the file's terms, in order.
        chunks_of: the chunk list of each xorb; only xorbs of terms overlapping the range
            are looked up.
        size: the file's size.
        first: the first byte asked for.
        last: the last byte asked for (inclusive, clipped to the file), None for the end.

    Returns:
        The kept terms, the offset of `first` into the first of them, and merged fetches.

    Raises:
        RangeNotSatisfiableError: `first` is at or past the end (any range of an empty file).
        XetInvalidError: the terms disagree with the size or with their xorbs' chunks.
    """
    pieces = _pieces(terms, chunks_of, size, first, _clip(size, first, last))
    return Plan(
        offset_into_first_range=first - pieces[0].offset,
        terms=tuple(piece.term for piece in pieces),
        fetches=_fetches(pieces, chunks_of),
    )


def segments(
    terms: Sequence[Term],
    chunks_of: Mapping[XetHash, Sequence[ChunkEntry]],
    size: int,
    first: int,
    last: int | None,
    *,
    max_chunks: int = SEGMENT_CHUNKS,
    max_bytes: int = SEGMENT_BYTES,
) -> tuple[Segment, ...]:
    """The storage reads that stream bytes [first, last] of a file, in order; their `take`s
    add up to the length of the range. A plain GET of an empty file reads nothing, so the
    caller answers it without asking here.

    Args:
        terms: the file's terms, in order.
        chunks_of: the chunk list of each xorb (as for `plan`).
        size: the file's size.
        first: the first byte asked for.
        last: the last byte asked for (inclusive, clipped to the file), None for the end.
        max_chunks: most chunks in one segment.
        max_bytes: most stored bytes in one segment, unless one chunk alone is larger.

    Raises:
        RangeNotSatisfiableError: `first` is at or past the end (any range of an empty file).
        XetInvalidError: the terms disagree with the size or with their xorbs' chunks.
    """
    last = _clip(size, first, last)
    pieces = _pieces(terms, chunks_of, size, first, last)
    return tuple(
        _segment(piece.term.xorb, run, offset, first, last + 1)
        for piece in pieces
        for run, offset in _runs(piece, max_chunks, max_bytes)
    )


def v1_body(plan: Plan, url_of: Callable[[Fetch], str]) -> dict[str, object]:
    """The JSON of `GET /v1/reconstructions/{file_id}` (xet-core `QueryReconstructionResponse`):
    one URL per fetch, to be read with `Range: bytes=<url_range.start>-<url_range.end>`."""
    fetch_info: dict[str, list[dict[str, object]]] = {}
    for fetch in plan.fetches:
        fetch_info.setdefault(fetch.xorb.hex, []).append(
            {
                "range": {"start": fetch.chunk_start, "end": fetch.chunk_end},
                "url": url_of(fetch),
                "url_range": {"start": fetch.byte_start, "end": fetch.last_byte},
            }
        )
    return {
        "offset_into_first_range": plan.offset_into_first_range,
        "terms": _terms_body(plan.terms),
        "fetch_info": fetch_info,
    }


def v2_body(plan: Plan, url_of_xorb: Callable[[XetHash], str]) -> dict[str, object]:
    """The JSON of `GET /v2/reconstructions/{file_id}` (xet-core
    `QueryReconstructionResponseV2`): one URL per xorb, listing all its ranges ascending. The
    client reads each range with its own `Range` request to that URL, or all in one
    multi-range request when the user turns multi-range fetching on."""
    ranges: dict[XetHash, list[dict[str, object]]] = {}
    for fetch in plan.fetches:
        ranges.setdefault(fetch.xorb, []).append(
            {
                "chunks": {"start": fetch.chunk_start, "end": fetch.chunk_end},
                "bytes": {"start": fetch.byte_start, "end": fetch.last_byte},
            }
        )
    return {
        "offset_into_first_range": plan.offset_into_first_range,
        "terms": _terms_body(plan.terms),
        "xorbs": {
            xorb.hex: [{"url": url_of_xorb(xorb), "ranges": entries}]
            for xorb, entries in ranges.items()
        },
    }


def _terms_body(terms: Sequence[Term]) -> list[dict[str, object]]:
    """Terms as xet-core's `XorbReconstructionTerm` (chunk range end exclusive)."""
    return [
        {
            "hash": term.xorb.hex,
            "unpacked_length": term.length,
            "range": {"start": term.start, "end": term.end},
        }
        for term in terms
    ]


def _clip(size: int, first: int, last: int | None) -> int:
    """The last byte to serve: `last` clipped to the file, after checking the range."""
    if first < 0 or (last is not None and last < first):
        raise ValueError(f"not a byte range: {first}-{last}")
    if first >= size:
        raise RangeNotSatisfiableError(
            f"Byte {first} is past the end of a file of {size} bytes", detail={"size": size}
        )
    return size - 1 if last is None else min(last, size - 1)


def _pieces(
    terms: Sequence[Term],
    chunks_of: Mapping[XetHash, Sequence[ChunkEntry]],
    size: int,
    first: int,
    last: int,
) -> list[_Piece]:
    """The terms overlapping [first, last] (a range `_clip` checked), the first and last
    trimmed to the overlapping chunks. Never empty, since the terms cover the file."""
    total = sum(term.length for term in terms)
    if total != size:
        raise XetInvalidError(
            "A file's terms do not add up to its size", detail={"size": size, "terms": total}
        )
    pieces = []
    offset = 0
    for term in terms:
        if offset > last:
            break
        if offset + term.length > first:
            pieces.append(_trim(term, _chunks(term, chunks_of), offset, first, last))
        offset += term.length
    return pieces


def _chunks(term: Term, chunks_of: Mapping[XetHash, Sequence[ChunkEntry]]) -> Sequence[ChunkEntry]:
    """The chunks a term names, checked against the term."""
    chunks = chunks_of.get(term.xorb, ())
    if not 0 <= term.start < term.end <= len(chunks):
        raise XetInvalidError(
            "A term names chunks its xorb does not have",
            detail={"xorb": term.xorb.hex, "start": term.start, "end": term.end},
        )
    named = chunks[term.start : term.end]
    if sum(chunk.length for chunk in named) != term.length:
        raise XetInvalidError(
            "A term's length is not that of its chunks",
            detail={"xorb": term.xorb.hex, "start": term.start, "end": term.end},
        )
    return named


def _trim(term: Term, chunks: Sequence[ChunkEntry], offset: int, first: int, last: int) -> _Piece:
    """The chunks of a term (starting at file `offset`) that overlap [first, last]."""
    starts = list(accumulate((chunk.length for chunk in chunks), initial=offset))
    lo = bisect_right(starts, first, lo=1) - 1  # the chunk holding `first`, else the first
    hi = bisect_right(starts, last, hi=len(chunks))  # past the chunk holding `last`
    kept = chunks[lo:hi]
    trimmed = Term(term.xorb, term.start + lo, term.start + hi, starts[hi] - starts[lo])
    return _Piece(trimmed, kept, starts[lo])


def _fetches(
    pieces: Sequence[_Piece], chunks_of: Mapping[XetHash, Sequence[ChunkEntry]]
) -> tuple[Fetch, ...]:
    """Per xorb (in order of first use), the pieces' chunk ranges sorted and merged where
    they overlap or touch, with the stored bytes they span."""
    spans: dict[XetHash, list[tuple[int, int]]] = {}
    for piece in pieces:
        spans.setdefault(piece.term.xorb, []).append((piece.term.start, piece.term.end))
    return tuple(
        Fetch(xorb, start, end, chunks_of[xorb][start].start, chunks_of[xorb][end - 1].end)
        for xorb, ranges in spans.items()
        for start, end in _merged(ranges)
    )


def _merged(ranges: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Half-open ranges sorted, with overlapping or touching ones joined."""
    ordered = sorted(ranges)
    start, end = ordered[0]
    for next_start, next_end in ordered[1:]:
        if next_start > end:
            yield start, end
            start = next_start
        end = max(end, next_end)
    yield start, end


def _runs(
    piece: _Piece, max_chunks: int, max_bytes: int
) -> Iterator[tuple[Sequence[ChunkEntry], int]]:
    """A piece's chunks cut into runs of at most `max_chunks` chunks and `max_bytes` stored
    bytes (a larger chunk runs alone), each with the file offset of its first byte."""
    chunks, offset, begin = piece.chunks, piece.offset, 0
    for index in range(1, len(chunks) + 1):
        if (
            index < len(chunks)
            and index - begin < max_chunks
            and chunks[index].end - chunks[begin].start <= max_bytes
        ):
            continue  # the next chunk joins this run
        run = chunks[begin:index]
        yield run, offset
        offset += sum(chunk.length for chunk in run)
        begin = index


def _segment(
    xorb: XetHash, run: Sequence[ChunkEntry], offset: int, first: int, end: int
) -> Segment:
    """A run of chunks starting at file `offset`, cut to the file range [first, end)."""
    skip = max(first - offset, 0)
    length = sum(chunk.length for chunk in run)
    take = min(offset + length, end) - offset - skip
    return Segment(xorb, run[0].start, run[-1].end, tuple(run), skip, take)
