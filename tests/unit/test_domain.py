"""Pure domain rules: names, paths, digests, hashes, commit ids, LFS entries, patterns, tokens."""

from __future__ import annotations

import dataclasses
import hashlib

import blake3
import pytest

from registry.domain import errors as e
from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import (
    PARALLEL_MIN,
    REGULAR_FILE_MAX,
    Digest,
    Hasher,
    git_blob_sha1,
    hash_bytes,
    is_sha256,
)
from registry.domain.names import RepoId, RepoType, check_ref_name, check_repo_path
from registry.domain.patterns import DEFAULT_GITATTRIBUTES, ignore_spec, lfs_spec
from registry.domain.tokens import TOKEN_PREFIX, hash_token, new_token, sign, verify_signature

HELLO = b"hello world"
# `printf "hello world" | git hash-object --stdin`
HELLO_GIT_SHA1 = "95d09f2b10159347eece71399a7e2e907ea3df4f"
HELLO_SHA256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


# --- repo names (hf-hub-protocol.md section 6) -------------------------------------------


@pytest.mark.parametrize(
    "name", ["m1", "A_b.c-d", "_x", "x_", "a", "a" * 96, "x1.5", "a-b-c", "a.gitx", "git"]
)
def test_repo_id_parse_accepts_valid_names(name: str) -> None:
    repo = RepoId.parse(RepoType.MODEL, "alice", name)
    assert (repo.key, repo.full_name) == (f"model/alice/{name}", f"alice/{name}")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-a",
        "a-",
        ".a",
        "a.",
        "a--b",
        "a..b",
        "a.git",
        "a" * 97,
        "a/b",
        "a b",
        "é",
        "a\x00",
        "a\nb",
        "a%2Fb",
    ],
)
def test_repo_id_parse_rejects_invalid_names(name: str) -> None:
    with pytest.raises(e.InvalidNameError):
        RepoId.parse(RepoType.MODEL, "alice", name)


@pytest.mark.parametrize("namespace", ["", "-alice", "al--ice", "al ice", "a" * 97, "x.git"])
def test_repo_id_parse_rejects_invalid_namespaces(namespace: str) -> None:
    with pytest.raises(e.InvalidNameError):
        RepoId.parse(RepoType.MODEL, namespace, "m1")


@pytest.mark.parametrize("namespace", ["datasets", "api", "v1", "Models", "LFS"])
def test_repo_id_parse_rejects_reserved_namespaces(namespace: str) -> None:
    with pytest.raises(e.InvalidNameError):
        RepoId.parse(RepoType.MODEL, namespace, "x")


def test_repo_type_keys_and_prefixes() -> None:
    assert RepoType.parse(None) is RepoType.MODEL
    assert RepoId.parse(RepoType.DATASET, "a", "b").key == "dataset/a/b"
    assert (RepoType.MODEL.url_prefix, RepoType.DATASET.url_prefix) == ("", "datasets/")
    assert RepoType.from_plural("datasets") is RepoType.DATASET
    assert RepoType.from_plural("spaces") is None
    with pytest.raises(e.InvalidNameError):
        RepoType.parse("space")


# --- ref names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref", ["main", "dev/x", "v1.0", "feature_2", "a" * 255, "release/2024-01"]
)
def test_check_ref_name_accepts_valid_refs(ref: str) -> None:
    assert check_ref_name(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "..",
        "a..b",
        "-x",
        "/x",
        ".x",
        "x/",
        "x.",
        "x.lock",
        "a//b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "refs/heads/x",
        "a@{1}",
        "a\x01",
        "a\x7f",
        "a" * 256,
        "0123456789abcdef0123456789abcdef01234567",  # would be read as a commit id
    ],
)
def test_check_ref_name_rejects_invalid_refs(ref: str) -> None:
    with pytest.raises(e.InvalidRevisionError):
        check_ref_name(ref)


# --- repo paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "a.txt",
        "sub dir/ünï cödé.txt",
        ".gitattributes",
        ".gitignore",
        ".github/workflows/x.yml",
        "a/.cachex",
        "a/b/c",
        "a..b",
        "x" * 1024,
    ],
)
def test_check_repo_path_accepts_valid_paths(path: str) -> None:
    assert check_repo_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "a/../b",
        "a/..",
        "/abs",
        "/",
        "C:/x",
        "c:x",
        "a\\b",
        "..\\x",
        "\\\\server\\share",
        "a\x00b",
        "a\nb",
        ".git",
        ".git/config",
        "a/.git/b",
        ".cache",
        "a/.cache/b",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "",
        "x" * 1025,
        "é" * 513,  # 1026 bytes in UTF-8
    ],
)
def test_check_repo_path_rejects_escaping_or_confusing_paths(path: str) -> None:
    with pytest.raises(e.InvalidPathError):
        check_repo_path(path)


# --- digests and hashes ------------------------------------------------------------------


def test_digest_text_form_round_trips() -> None:
    hex_ = "ab" * 32
    digest = Digest(hex_)
    assert str(digest) == f"blake3:{hex_}"
    assert Digest.parse(str(digest)) == digest == Digest.parse(hex_)
    assert Digest.parse(f"blake3:{hex_.upper()}") == digest
    assert {digest: 1}[Digest.parse(hex_)] == 1
    assert sorted([Digest("cd" * 32), digest]) == [digest, Digest("cd" * 32)]


@pytest.mark.parametrize(
    "text",
    ["", "xyz", "ab" * 31, "ab" * 33, "g" * 64, f"sha256:{'ab' * 32}", f"blake3:{'ab' * 31}"],
)
def test_digest_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(e.InvalidError):
        Digest.parse(text)


def test_digest_constructor_requires_lowercase_hex() -> None:
    with pytest.raises(e.InvalidError):
        Digest("AB" * 32)


def test_hash_bytes_matches_reference_implementations() -> None:
    hashes = hash_bytes(HELLO)
    assert hashes.blake3 == Digest(blake3.blake3(HELLO).hexdigest())
    assert hashes.sha256 == HELLO_SHA256 == hashlib.sha256(HELLO).hexdigest()
    assert hashes.git_sha1 == HELLO_GIT_SHA1 == git_blob_sha1(HELLO)
    assert hashes.size == len(HELLO)
    assert hash_bytes(b"").blake3.hex == EMPTY_BLAKE3
    assert is_sha256(HELLO_SHA256) and not is_sha256(HELLO_GIT_SHA1)


def test_hasher_git_sha1_only_when_the_size_is_known_and_right() -> None:
    def run(size_hint: int | None, data: bytes) -> str | None:
        hasher = Hasher(size_hint)
        hasher.update(data[:3])
        hasher.update(memoryview(data)[3:])
        return hasher.result().git_sha1

    assert run(len(HELLO), HELLO) == HELLO_GIT_SHA1
    assert run(None, HELLO) is None
    assert run(len(HELLO) + 1, HELLO) is None  # the declared size was wrong
    big = bytes(REGULAR_FILE_MAX + 1)
    assert run(len(big), big) is None  # LFS-sized: no git sha1


@pytest.mark.parametrize(
    "size", [0, 1, PARALLEL_MIN - 1, PARALLEL_MIN, PARALLEL_MIN + 1, 3 * PARALLEL_MIN + 4097]
)
@pytest.mark.parametrize("piece", [1000, PARALLEL_MIN, 2 * PARALLEL_MIN + 3])
def test_hasher_gives_the_serial_digests_whatever_the_pieces(size: int, piece: int) -> None:
    """Large pieces are hashed on two threads; every split gives the reference digests."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    hasher = Hasher(size)
    for start in range(0, size, piece):
        hasher.update(memoryview(data)[start : start + piece])
    hashes = hasher.result()
    assert hashes.blake3.hex == blake3.blake3(data).hexdigest()
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.size == size
    assert hashes.git_sha1 == git_blob_sha1(data)  # all sizes here are below REGULAR_FILE_MAX
    alone = Hasher(sha256=False)
    alone.update(data)
    assert alone.result().blake3 == hashes.blake3 and alone.result().sha256 == ""


# --- commits and tree entries ------------------------------------------------------------


def entry(path: str, data: bytes, *, lfs: bool = False) -> TreeEntry:
    hashes = hash_bytes(data)
    return TreeEntry(path, hashes.blake3, hashes.sha256, hashes.size, lfs, hashes.git_sha1)


COMMIT = {
    "repo_key": "model/alice/m1",
    "incarnation": "i1",
    "parent": None,
    "author": "alice",
    "title": "t",
    "message": "m",
    "created_ms": 1_700_000_000_000,
}


def make_commit(tree: list[TreeEntry], **changes: object) -> str:
    fields = {**COMMIT, **changes}
    # The dict holds commit_id's keyword arguments; mypy cannot check a mixed-value dict.
    return commit_id(tree=tree, **fields)  # type: ignore[arg-type]


def test_commit_id_is_forty_lowercase_hex_and_stable_across_calls() -> None:
    tree = [entry("a.txt", b"a")]
    first = make_commit(tree)
    assert len(first) == 40 and all(c in "0123456789abcdef" for c in first)
    assert make_commit(list(tree)) == first
    # Pinned: every node (and every version of the code) must derive the same id.
    assert first == "aa52c6068aa62e2501420229763c6f619028b6ae"


def test_commit_id_ignores_tree_order() -> None:
    a, b = entry("a.txt", b"a"), entry("sub/b.bin", b"b", lfs=True)
    assert make_commit([a, b]) == make_commit([b, a])


@pytest.mark.parametrize(
    "change",
    [
        {"repo_key": "model/alice/m2"},
        {"incarnation": "i2"},
        {"parent": "0" * 40},
        {"author": "bob"},
        {"title": "t2"},
        {"message": "m2"},
        {"created_ms": 1_700_000_000_001},
    ],
)
def test_commit_id_changes_with_any_commit_field(change: dict[str, object]) -> None:
    tree = [entry("a.txt", b"a")]
    assert make_commit(tree, **change) != make_commit(tree)


def test_commit_id_changes_with_the_tree() -> None:
    base = entry("a.txt", b"a")
    trees = [
        [base],
        [],
        [entry("b.txt", b"a")],  # renamed
        [entry("a.txt", b"b")],  # other content
        [dataclasses.replace(base, lfs=True)],  # stored as LFS
        [base, entry("c.txt", b"c")],  # one more file
    ]
    ids = [make_commit(tree) for tree in trees]
    assert len(set(ids)) == len(ids)


def test_tree_entry_of_a_regular_file_uses_its_git_sha1() -> None:
    regular = entry("a", HELLO)
    assert regular.etag == regular.oid == HELLO_GIT_SHA1


def test_tree_entry_of_an_lfs_file_uses_sha256_and_the_pointer() -> None:
    lfs = entry("w.safetensors", HELLO, lfs=True)
    assert (
        lfs.pointer
        == (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{HELLO_SHA256}\n"
            f"size {len(HELLO)}\n"
        ).encode()
    )
    assert lfs.etag == HELLO_SHA256
    assert lfs.oid == hashlib.sha1(b"blob %d\0" % len(lfs.pointer) + lfs.pointer).hexdigest()


def test_tree_entry_without_git_sha1_falls_back_to_lfs_identity() -> None:
    large = dataclasses.replace(entry("big.txt", HELLO), git_sha1=None)
    assert large.etag == HELLO_SHA256
    assert large.oid == git_blob_sha1(large.pointer)


# --- LFS and ignore patterns -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "m.safetensors",
        "w.bin",
        "deep/dir/m.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "a/b/c/m.ckpt",
        "model.gguf",
        "data.parquet",
        "saved_model/variables/x",
        "runs/events.out.tfevents.1.host",
    ],
)
def test_default_gitattributes_route_weights_to_lfs(path: str) -> None:
    assert lfs_spec(DEFAULT_GITATTRIBUTES).match_file(path)


@pytest.mark.parametrize(
    "path",
    [
        "config.json",
        "sub/config.json",
        "model.safetensors.index.json",
        "README.md",
        "tokenizer.txt",
        "safetensors",
        ".gitattributes",
    ],
)
def test_default_gitattributes_keep_text_files_regular(path: str) -> None:
    assert not lfs_spec(DEFAULT_GITATTRIBUTES).match_file(path)


def test_lfs_spec_reads_only_lfs_filter_lines() -> None:
    spec = lfs_spec(
        "# *.txt filter=lfs diff=lfs\n"
        "*.json filter=lfs diff=lfs merge=lfs -text\n"
        "*.md text\n"
        "\n"
        "big/** filter=lfs\n"
    )
    assert spec.match_file("a/config.json") and spec.match_file("big/x/y.md")
    assert not spec.match_file("notes.txt") and not spec.match_file("README.md")


def test_ignore_spec_matches_like_gitignore() -> None:
    spec = ignore_spec("*.log\n/build/\n!keep.log\n")
    assert spec.match_file("logs/x.log") and spec.match_file("build/out.bin")
    assert not spec.match_file("keep.log") and not spec.match_file("src/build.py")


# --- tokens and signatures ---------------------------------------------------------------


def test_new_tokens_are_unique_and_stored_only_as_hashes() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith(TOKEN_PREFIX) and len(first) > 40
    assert hash_token(first) == hashlib.sha256(first.encode()).hexdigest() != first
    assert hash_token(first) != hash_token(second)


def test_verify_signature_accepts_only_the_signed_parts_and_secret() -> None:
    signature = sign("secret", "oid", "5", "99")
    assert verify_signature("secret", signature, "oid", "5", "99")
    assert not verify_signature("secret", signature, "oid", "6", "99")
    assert not verify_signature("secret", signature, "oid", "5")
    assert not verify_signature("other", signature, "oid", "5", "99")
    assert not verify_signature("secret", signature.upper(), "oid", "5", "99")
    # Parts are delimited: moving characters across a boundary changes the signature.
    assert sign("s", "ab", "c") != sign("s", "a", "bc")
