"""The recorded change-feed pages (tests/golden/feed_scenario.raw.json, as served by the version
before typed change entries) decode with the feed models and encode back to the same bytes;
every entry's body decodes into its typed change, which writes exactly that body again; and
their commit ids derive from their bodies. `decode_page` and `encode_page` are the two halves a
feed page goes through: the puller's reading (sync/puller.py) and the route's writing
(registry/api/routes/sync.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from fastapi.responses import JSONResponse

from registry.domain.changes import ChangeEntry, UnknownChange
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


def decode_page(body: bytes) -> tuple[FeedOut, list[ChangeEntry]]:
    """As a puller reads a page: the client's model, then the planner's entries."""
    feed = FeedOut.model_validate(json.loads(body))
    return feed, [ChangeEntry(**e.model_dump()) for e in feed.entries]


def encode_page(feed: FeedOut, entries: list[ChangeEntry]) -> bytes:
    """As the route writes a page from the entries it read from the log."""
    page = FeedOut(
        node_id=feed.node_id,
        epoch=feed.epoch,
        head=feed.head,
        last_serial=feed.last_serial,
        entries=[FeedEntryOut(**asdict(e)) for e in entries],
        last_chain=feed.last_chain,
    )
    return bytes(JSONResponse(page.model_dump()).body)


@pytest.mark.parametrize("exchange", PAGES, ids=[e.name for e in PAGES])
def test_feed_page_decodes_and_encodes_to_the_recorded_bytes(exchange: Exchange) -> None:
    again = encode_page(*decode_page(exchange.body))
    assert again == exchange.body, first_difference(exchange.body, again)


@pytest.mark.parametrize("exchange", PAGES, ids=[e.name for e in PAGES])
def test_feed_entries_typed_changes_write_the_recorded_bodies(exchange: Exchange) -> None:
    _, entries = decode_page(exchange.body)
    for entry in entries:
        change = entry.change()
        assert not isinstance(change, UnknownChange), entry.kind
        assert change.KIND == entry.kind
        stored = json.dumps(change.body(), sort_keys=True)  # as the change log keeps it
        assert stored == json.dumps(entry.body), entry.serial


def test_feed_recording_commit_ids_derive_from_their_bodies() -> None:
    entries = feed_entries(RAW)
    assert check_commit_ids(entries) == sum(1 for e in entries if e["kind"] == "commit.add") > 0


def test_feed_recording_raw_and_normalised_fixtures_agree() -> None:
    """The normalised fixture is the raw one normalised: both come from one recording."""
    normalised = load(NORMALISED_FIXTURE)
    assert [e.to_json() for e in Normaliser().exchanges(RAW)] == [e.to_json() for e in normalised]
