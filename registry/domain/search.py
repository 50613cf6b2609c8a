"""Search documents and queries: what a repo is found by, and when a document matches.

One tokenizer serves both paths a search takes: the full-text index is fed tokens made here,
and the direct query over repos the index has not caught up with matches the same tokens, so
an upload is found the same way whether or not it is indexed yet.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field, replace

KINDS = ("checkpoint", "lora", "embedding", "vae", "controlnet", "workflow", "other")
SORTS = ("recent", "downloads", "created")
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_TOKENS = 16
MAX_TOKEN_CHARS = 64


def tokens(text: str) -> list[str]:
    """Lower-case words without diacritics: `Pony-Diffusion V6` -> pony, diffusion, v6."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return [t[:MAX_TOKEN_CHARS] for t in _WORD.findall(plain)]


def normalize_key(value: str | None) -> str | None:
    """How kinds and base models compare: case and surrounding space do not matter."""
    cleaned = " ".join((value or "").split()).casefold()
    return cleaned or None


@dataclass(frozen=True)
class SearchQuery:
    repo_type: str = "model"
    text: str = ""
    kind: str | None = None
    base_model: str | None = None
    tags: tuple[str, ...] = ()
    author: str | None = None
    sort: str = "recent"
    offset: int = 0
    limit: int = 20
    any_tags: tuple[str, ...] = ()  # at least one of these (`tags`: every one of those)

    @property
    def words(self) -> list[str]:
        return list(dict.fromkeys(tokens(self.text)))[:MAX_QUERY_TOKENS]


@dataclass(frozen=True)
class SearchDoc:
    """What a repo is found by, derived from its main branch (card and weight files)."""

    repo_id: int
    repo_type: str
    namespace: str
    name: str
    private: bool
    updated_ms: int
    created_ms: int
    downloads: int
    commit_id: str | None
    kind: str | None = None
    base_model: str | None = None
    license: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()  # card tags plus kind:, base_model:, license: (filterable)
    trigger_words: tuple[str, ...] = ()
    suggested_tags: tuple[str, ...] = ()  # from training metadata (searchable text only)
    complete: bool = True  # False while a file it reads (README.md) is not stored here
    home: str = ""  # the node the repo is homed on (where it takes writes)
    gated: str | None = None  # "auto" or "manual": downloads need an accepted access request
    body: str = field(default="", compare=False)  # the card's text, title included (words only)
    words: tuple[str, ...] = field(default=(), compare=False)  # sorted unique tokens

    def text(self) -> str:
        """Everything free text matches, as the index stores it."""
        parts = [self.namespace, self.name, self.description, *self.tags]
        parts += [*self.trigger_words, *self.suggested_tags, self.body]
        return " ".join(sorted(set(tokens(" ".join(parts)))))

    def with_words(self) -> SearchDoc:
        return replace(self, words=tuple(self.text().split()))


def matches(doc: SearchDoc, query: SearchQuery) -> bool:
    """The same predicate the index evaluates: every word a prefix of a document word."""
    if doc.repo_type != query.repo_type or (query.author and doc.namespace != query.author):
        return False
    if query.kind and normalize_key(doc.kind) != normalize_key(query.kind):
        return False
    if query.base_model and normalize_key(doc.base_model) != normalize_key(query.base_model):
        return False
    if any(tag not in doc.tags for tag in query.tags):
        return False
    if query.any_tags and not any(tag in doc.tags for tag in query.any_tags):
        return False
    return all(_has_prefix(doc.words, word) for word in query.words)


def _has_prefix(words: tuple[str, ...], prefix: str) -> bool:
    at = bisect_left(words, prefix)
    return at < len(words) and words[at].startswith(prefix)


def sort_key(doc: SearchDoc, sort: str) -> tuple[int, int]:
    """Descending order for every sort: larger keys first, newer repo ids break ties."""
    value = {"downloads": doc.downloads, "created": doc.created_ms}.get(sort, doc.updated_ms)
    return (value, doc.repo_id)
