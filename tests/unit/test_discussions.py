"""How a pull request's files merge into its target branch (registry.domain.discussions)."""

from __future__ import annotations

import pytest

from registry.domain.commit import TreeEntry
from registry.domain.digest import hash_bytes
from registry.domain.discussions import check_text, merge_trees, tree_diff
from registry.domain.errors import InvalidError


def file(path: str, content: bytes) -> TreeEntry:
    hashes = hash_bytes(content)
    return TreeEntry(path, hashes.blake3, hashes.sha256, hashes.size, False, None)


def tree(*entries: TreeEntry) -> dict[str, TreeEntry]:
    return {e.path: e for e in entries}


def test_merge_applies_the_pr_changes_to_a_target_that_moved_elsewhere() -> None:
    base = tree(file("a", b"1"), file("gone", b"g"))
    target = tree(file("a", b"1"), file("gone", b"g"), file("t", b"main"))
    pr = tree(file("a", b"2"), file("new", b"n"))
    merged = merge_trees(base, target, pr)
    assert merged.conflicts == []
    assert merged.tree == tree(file("a", b"2"), file("t", b"main"), file("new", b"n"))
    assert merged.changed == {"a", "new"}


def test_merge_reports_paths_both_sides_changed_differently() -> None:
    base = tree(file("a", b"1"), file("b", b"1"), file("c", b"1"))
    target = tree(file("a", b"main"), file("b", b"same"))  # c deleted on main
    pr = tree(file("a", b"pr"), file("b", b"same"), file("c", b"pr"))
    merged = merge_trees(base, target, pr)
    assert merged.conflicts == ["a", "c"]  # b: both made the same change


def test_merge_of_a_pr_without_changes_changes_nothing() -> None:
    base = tree(file("a", b"1"))
    target = tree(file("a", b"2"))
    merged = merge_trees(base, target, base)
    assert (merged.tree, merged.changed, merged.conflicts) == (target, set(), [])


def test_text_that_cannot_be_stored_is_refused() -> None:
    assert check_text("naïve ✓", "title") == "naïve ✓"
    with pytest.raises(InvalidError):
        check_text("half \ud800 a pair", "title")


def test_tree_diff_shows_text_lines_and_names_binary_files() -> None:
    texts = {
        file("a", b"one\ntwo\n").blake3: "one\ntwo\n",
        file("a", b"one\n2\n").blake3: "one\n2\n",
    }
    base = tree(file("a", b"one\ntwo\n"), file("gone", b"x"), file("w.bin", b"\x00"))
    head = tree(file("a", b"one\n2\n"), file("w.bin", b"\x01"))

    def text_of(entry: TreeEntry) -> str | None:
        return texts.get(entry.blake3, "x" if entry.path == "gone" else None)

    diff = tree_diff(base, head, text_of)
    assert diff.startswith(
        "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"
    )
    assert "diff --git a/gone b/gone\ndeleted file\n--- a/gone\n+++ /dev/null\n" in diff
    assert diff.endswith("diff --git a/w.bin b/w.bin\nBinary files a/w.bin and b/w.bin differ\n")
    assert tree_diff(base, base, text_of) == ""
