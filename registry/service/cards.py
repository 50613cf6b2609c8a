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
from registry.domain.errors import InvalidError, SafetensorsError
from registry.domain.safetensors import read_header
from registry.domain.search import KINDS, normalize_key
from registry.service.cache import Lru
from registry.storage import BlobStore

logger = logging.getLogger(__name__)
MAX_CARD_BYTES = 1024 * 1024
MAX_DESCRIPTION = 1000
# libyaml's safe loader when PyYAML was built with it (10x faster: cards are read in bulk).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TRIGGER_KEYS = ("trigger_words", "trained_words", "instance_prompt")
# kohya-ss LoRA training metadata worth showing (the rest stays in the file).
TRAINING_KEYS = (
    "ss_base_model_version",
    "ss_sd_model_name",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_output_name",
    "ss_num_epochs",
    "ss_resolution",
)


@dataclass(frozen=True)
class Card:
    data: dict[str, Any] = field(default_factory=dict)  # the front matter, as written
    body: str = ""  # the Markdown after it

    @property
    def tags(self) -> list[str]:
        """Card tags plus kind and base model, so listings can filter on them."""
        tags = [str(t) for t in _as_list(self.data.get("tags"))]
        for key in ("kind", "base_model", "license"):
            tags += [f"{key}:{v}" for v in _as_list(self.data.get(key))]
        return list(dict.fromkeys(tags))

    @property
    def kind(self) -> str | None:
        """One of KINDS; a kind the card names that is not one of them is `other`."""
        value = normalize_key(_first(self.data.get("kind")))
        if value is None:
            return None
        return value if value in KINDS else "other"

    @property
    def base_model(self) -> str | None:
        return _first(self.data.get("base_model"))

    @property
    def license(self) -> str | None:
        return _first(self.data.get("license"))

    @property
    def trigger_words(self) -> list[str]:
        """`trigger_words`, or what trainers call them (`trained_words`, `instance_prompt`)."""
        for key in TRIGGER_KEYS:
            words = [str(w).strip() for w in _as_list(self.data.get(key)) if str(w).strip()]
            if words:
                return list(dict.fromkeys(words))
        return []

    @property
    def description(self) -> str:
        """`description` from the front matter, else the first paragraph of the body."""
        given = self.data.get("description")
        if isinstance(given, str) and given.strip():
            return given.strip()[:MAX_DESCRIPTION]
        paragraph: list[str] = []
        for line in self.body.splitlines():
            text = line.strip()
            if text and not text.startswith(("#", "<", "!", "|", "```")):
                paragraph.append(text)
            elif paragraph:
                break
        return " ".join(paragraph)[:MAX_DESCRIPTION]


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _first(value: object) -> str | None:
    items = [str(v).strip() for v in _as_list(value) if str(v).strip()]
    return items[0] if items else None


def parse_card(text: str) -> Card:
    front, body = _split(text)
    if front is None:
        return Card(body=body)
    try:
        data = yaml.load(front, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        logger.info("model card front matter is not valid YAML: %s", exc)
        return Card(body=body)
    return Card(data, body) if isinstance(data, dict) else Card(body=body)


def _split(text: str) -> tuple[str | None, str]:
    """(front matter, body); no front matter unless the text opens with a `---` line."""
    if not text.startswith("---"):
        return None, text
    _, _, rest = text.partition("\n")
    front, sep, after = rest.partition("\n---")
    if not sep:
        return None, text
    return front, after.partition("\n")[2]


def rewrite_card(text: str, changes: dict[str, object]) -> str:
    """The card with `changes` merged into its front matter (None removes a key).

    Only the lines of the keys whose value changes are rewritten: every other line of the
    front matter (comments, key order, quoting, flow or block style) stays as written.

    Raises:
        InvalidError: the existing front matter is not a YAML mapping (it is not guessed at).
    """
    front, body = _split(text)
    lines = [] if front is None else front.splitlines(keepends=True)
    spans = _top_level_spans(front or "")
    if spans is None:
        raise InvalidError("The README.md front matter is not a YAML mapping; fix it first")
    if spans and spans[0].start < 0:  # one flow mapping `{...}`: written again in block style
        lines, changes = [], {**{s.key: s.value for s in spans}, **changes}  # type: ignore[misc]
        spans = []
    replaced: dict[int, list[str]] = {}  # first line of a span -> what takes its place
    dropped: set[int] = set()
    added: list[str] = []
    for key, value in changes.items():
        found = [s for s in spans if s.key == key]
        if found and value is not None and all(s.value == value for s in found):
            continue  # unchanged: its lines stay as written
        for span in found:
            dropped.update(range(span.start, span.end))
        if value is None:
            continue
        dumped = _dump({key: value})
        if found:
            replaced[found[0].start] = dumped
        else:
            added += dumped
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    kept: list[str] = []
    for number, line in enumerate(lines):
        kept += replaced.get(number, [])
        if number not in dropped:
            kept.append(line)
    kept += added
    if not any(line.strip() and not line.lstrip().startswith("#") for line in kept):
        return body
    return f"---\n{''.join(kept)}---\n{body}"


@dataclass(frozen=True)
class _Span:
    """A top-level key of the front matter and the lines [start, end) its entry takes."""

    key: object
    value: object  # as loaded
    start: int
    end: int


def _top_level_spans(front: str) -> list[_Span] | None:
    """The entries of the mapping at the top of the front matter (lines -1 for a flow
    mapping); None when it is not a mapping (an empty front matter is an empty mapping)."""
    try:
        root = yaml.compose(front, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        return None
    data = yaml.load(front, Loader=yaml.SafeLoader)
    if root.flow_style:
        return [_Span(key, value, -1, -1) for key, value in data.items()]
    lines = front.splitlines()
    spans = []
    for key_node, value_node in root.value:
        end_mark = value_node.end_mark
        end = end_mark.line + (1 if end_mark.column > 0 else 0)
        while end > key_node.start_mark.line + 1 and _is_filler(lines[end - 1]):
            end -= 1  # blank lines and comments after the value belong to no key
        key: object = next((k for k in data if str(k) == key_node.value), key_node.value)
        spans.append(_Span(key, data.get(key), key_node.start_mark.line, end))
    return spans


def _is_filler(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _dump(data: dict[str, object]) -> list[str]:
    dumped = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096)
    return dumped.splitlines(keepends=True)


@dataclass(frozen=True)
class WeightsSummary:
    """Parameters by dtype over a commit's .safetensors files (the Hub's `safetensors`), and
    the training metadata of the first file that carries kohya-style `ss_*` keys."""

    parameters: dict[str, int]
    training: dict[str, str] = field(default_factory=dict)
    suggested_tags: list[str] = field(default_factory=list)

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
        return self._cards.put(commit_id, parse_card(self.text(readme)))

    def text(self, entry: TreeEntry) -> str:
        """A small stored file as text (undecodable bytes replaced)."""
        if entry.size > MAX_CARD_BYTES:
            raise InvalidError(f"{entry.path} is larger than {MAX_CARD_BYTES} bytes")
        return b"".join(self._blobs.open(entry.blake3)).decode("utf-8", "replace")

    def weights(self, commit_id: str, files: list[TreeEntry]) -> WeightsSummary | None:
        """Sum the safetensors headers of a commit; files not stored here are skipped."""
        cached = self._weights.get(commit_id)
        if cached is not None:
            return cached
        total: dict[str, int] = {}
        training: dict[str, str] = {}
        suggested: list[str] = []
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
            if not training:
                training = {k: info.metadata[k] for k in TRAINING_KEYS if info.metadata.get(k)}
                suggested = info.suggested_tags
        if not total:
            return None
        summary = WeightsSummary(total, training, suggested)
        return self._weights.put(commit_id, summary) if complete else summary


def _read(blobs: BlobStore, entry: TreeEntry, start: int, end: int) -> bytes:
    return b"".join(blobs.open(entry.blake3, start, end))
