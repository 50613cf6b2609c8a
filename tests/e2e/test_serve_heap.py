"""`modelyard serve` keeps the objects it built at startup out of the cyclic collector."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.e2e.cluster import NodeProcess

pytestmark = [pytest.mark.e2e]


def frozen(node: NodeProcess) -> int:
    with node.client() as http:
        scrape = http.get("/metrics").text
    found = re.search(r"^modelyard_gc_frozen_objects (\S+)$", scrape, re.MULTILINE)
    assert found, scrape[:2000]
    return int(float(found.group(1)))


def test_serve_freezes_its_startup_objects(spawn: Callable[..., NodeProcess]) -> None:
    node = spawn("a")
    # The app, its services and modules: tens of thousands of objects a full collection no
    # longer walks (each walk stopped the event loop for 50-400 ms under load).
    first = frozen(node)
    assert first > 20_000
    with node.client() as http:
        for _ in range(50):
            assert http.get("/api/models").status_code == 200
    # Frozen once, at startup: the count never grows (it may shrink as frozen objects die).
    assert 20_000 < frozen(node) <= first
