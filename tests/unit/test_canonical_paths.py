"""Where a repo id without a namespace (`gpt2`) leaves its namespace out of a URL path."""

from __future__ import annotations

import pytest

from registry.api.canonical import missing_namespace_at

ACTIONS = frozenset({"revision", "tree", "commits", "refs", "resolve", "auth-check", "commit"})


@pytest.mark.parametrize(
    ("path", "at"),
    [
        ("/api/models/gpt2", 11),
        ("/api/datasets/squad", 13),
        ("/api/models/gpt2/revision/main", 11),
        ("/api/models/gpt2/tree/main/sub", 11),
        ("/api/models/gpt2/commits/refs%2Fpr%2F1", 11),
        ("/api/models/gpt2/refs", 11),
        ("/gpt2/resolve/main/config.json", 0),
        ("/datasets/squad/resolve/main/a/b.json", 9),
        ("/api/models/alice/m1", None),
        ("/api/models/alice/m1/revision/main", None),
        ("/api/models/alice/tree/tree/main", None),  # the namespaced form wins
        ("/api/models/~/gpt2/tree/main", None),  # a next-page link of `gpt2`
        ("/alice/m1/resolve/main/config.json", None),
        ("/datasets/alice/d1/resolve/main/x", None),
        ("/gpt2.git/info/lfs/objects/batch", 0),
        ("/datasets/squad.git/info/lfs/objects/batch", 9),
        ("/alice/m1.git/info/lfs/objects/batch", None),
        ("/datasets/alice/d1.git/info/lfs/objects/batch", None),
        ("/.git/info/lfs/objects/batch", None),
        ("/alice", None),  # the author page
        ("/alice/m1", None),
        ("/api/models", None),
        ("/api/models/", None),
        ("/api/spaces/gpt2", None),
        ("/v1/health", None),
    ],
)
def test_missing_namespace_at_finds_the_gap_of_single_segment_ids(path: str, at: int) -> None:
    assert missing_namespace_at(path, ACTIONS) == at
