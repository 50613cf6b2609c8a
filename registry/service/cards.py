"""Model cards: the YAML front matter of a repo's README.md, as the Hub reads it.

Parsed per commit (commits are immutable, so the result is cached by commit id). A card that
is missing, too large or not valid YAML gives an empty card: it never hides the repo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry.domain.commit import TreeEntry
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


class CardReader:
    def __init__(self, blobs: BlobStore, capacity: int = 4096) -> None:
        self._blobs = blobs
        self._cards: Lru[str, Card] = Lru(capacity)

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
