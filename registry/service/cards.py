"""Model metadata: the card (README.md front matter) and safetensors weight headers.

Parsed per commit (commits are immutable, so the result is cached by commit id). A card that
is missing, too large or not valid YAML gives an empty card: it never hides the repo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import yaml

from registry.domain.commit import TreeEntry
from registry.domain.safetensors import SafetensorsError, read_header
from registry.service.cache import Lru
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
MAX_CARD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Card:
    data: dict[str, Any] = field(default_factory=dict)  # the front matter, as written

    @property
    def tags(self) -> list[str]:
        """Card tags plus kind and base model, so listings can filter on them."""
        tags = [str(t) for t in _as_list(self.data.get("tags"))]
        for key in ("kind", "base_model", "license"):
            tags += [f"{key}:{v}" for v in _as_list(self.data.get(key))]
        return list(dict.fromkeys(tags))


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def parse_card(text: str) -> Card:
    if not text.startswith("---"):
        return Card()
    _, _, rest = text.partition("\n")
    front, sep, _ = rest.partition("\n---")
    if not sep:
        return Card()
    try:
        data = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        logger.info("model card front matter is not valid YAML: %s", exc)
        return Card()
    return Card(data) if isinstance(data, dict) else Card()


@dataclass(frozen=True)
class WeightsSummary:
    """Parameters by dtype over a commit's .safetensors files (the Hub's `safetensors`)."""

    parameters: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parameters.values())


class CardReader:
    def __init__(self, blobs: BlobStore, capacity: int = 4096) -> None:
        self._blobs = blobs
        self._cards: Lru[str, Card] = Lru(capacity)
        self._weights: Lru[str, WeightsSummary] = Lru(capacity)

    def card(self, commit_id: str, readme: TreeEntry | None) -> Card:
        cached = self._cards.get(commit_id)
        if cached is not None:
            return cached
        if (
            readme is None
            or readme.size > MAX_CARD_BYTES
            or self._blobs.stat(readme.blake3) is None
        ):
            return Card()  # a replica may not hold the bytes yet: do not cache
        text = b"".join(self._blobs.open(readme.blake3)).decode("utf-8", "replace")
        return self._cards.put(commit_id, parse_card(text))

    def weights(self, commit_id: str, files: list[TreeEntry]) -> WeightsSummary | None:
        """Sum the safetensors headers of a commit; files not stored here are skipped."""
        cached = self._weights.get(commit_id)
        if cached is not None:
            return cached
        total: dict[str, int] = {}
        complete = True
        for entry in files:
            if self._blobs.stat(entry.blake3) is None:
                complete = False
                continue
            try:
                info = read_header(partial(_read, self._blobs, entry), entry.size)
            except SafetensorsError as exc:
                logger.info("unreadable safetensors path=%s: %s", entry.path, exc)
                continue
            for dtype, count in info.parameters.items():
                total[dtype] = total.get(dtype, 0) + count
        if not total:
            return None
        summary = WeightsSummary(total)
        return self._weights.put(commit_id, summary) if complete else summary


def _read(blobs: BlobStore, entry: TreeEntry, start: int, end: int) -> bytes:
    return b"".join(blobs.open(entry.blake3, start, end))
