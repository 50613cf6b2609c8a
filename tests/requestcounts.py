"""How many requests a node has answered, read from its own /metrics."""

from __future__ import annotations

import re
from collections import Counter

import httpx

_LINE = re.compile(r"^modelyard_http_requests_total\{(.*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def answered_by_status(url: str, **labels: str) -> Counter[str]:
    """The requests the node at `url` has answered since it started, by status class ("2xx",
    "4xx", ...), among those whose labels (`route`, `method`) have the values given."""
    counts: Counter[str] = Counter()
    for found in _LINE.finditer(httpx.get(f"{url}/metrics", timeout=10).text):
        seen = dict(_LABEL.findall(found.group(1)))
        if all(seen.get(name) == value for name, value in labels.items()):
            counts[seen["status"]] += int(float(found.group(2)))
    return counts
