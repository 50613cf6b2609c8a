"""The recorded change-feed pages (tests/golden/feed_scenario.raw.json, as served) decode with
the feed models and encode back to the same bytes, and their commit ids derive from their
bodies. `decode_page` and `encode_page` are the two halves a feed page goes through: the
puller's reading (sync/puller.py) and the route's writing (registry/api/routes/sync.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from fastapi.responses import JSONResponse

from registry.domain.replication import Entry
from registry.wire import FeedEntryOut, FeedOut
from tests.feed_golden import (
    NORMALISED_FIXTURE,
    RAW_FIXTURE,
    Exchange,
    Normaliser,
    check_commit_ids,
    feed_entries,
    first_difference,
    load,
)

RAW = load(RAW_FIXTURE)
PAGES = [e for e in RAW if e.status == 200]


def decode_page(body: bytes) -> tuple[FeedOut, list[Entry]]:
    """As a puller reads a page: the client's model, then the planner's entries."""
    feed = FeedOut.model_validate(json.loads(body))
    return feed, [Entry(**e.model_dump()) for e in feed.entries]


def encode_page(feed: FeedOut, entries: list[Entry]) -> bytes:
    """As the route writes a page from the entries it read from the log."""
    page = FeedOut(
        node_id=feed.node_id,
        epoch=feed.epoch,
        head=feed.head,
        last_serial=feed.last_serial,
        entries=[FeedEntryOut(**asdict(e)) for e in entries],
    )
    return bytes(JSONResponse(page.model_dump()).body)


@pytest.mark.parametrize("exchange", PAGES, ids=[e.name for e in PAGES])
def test_feed_page_decodes_and_encodes_to_the_recorded_bytes(exchange: Exchange) -> None:
    again = encode_page(*decode_page(exchange.body))
    assert again == exchange.body, first_difference(exchange.body, again)


def test_feed_recording_commit_ids_derive_from_their_bodies() -> None:
    entries = feed_entries(RAW)
    assert check_commit_ids(entries) == sum(1 for e in entries if e["kind"] == "commit.add") > 0


def test_feed_recording_raw_and_normalised_fixtures_agree() -> None:
    """The normalised fixture is the raw one normalised: both come from one recording."""
    normalised = load(NORMALISED_FIXTURE)
    assert [e.to_json() for e in Normaliser().exchanges(RAW)] == [e.to_json() for e in normalised]
