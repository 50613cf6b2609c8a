"""Pure domain rules: names, paths, digests, commit ids, LFS patterns, tokens, error codes."""

from __future__ import annotations

import pytest

from registry.api.errors import status_of
from registry.domain import errors as e
from registry.domain.commit import TreeEntry, commit_id
from registry.domain.digest import Digest, hash_bytes
from registry.domain.names import RepoId, RepoType, check_ref_name, check_repo_path
from registry.domain.patterns import DEFAULT_GITATTRIBUTES, ignore_spec, lfs_spec
from registry.domain.tokens import hash_token, new_token, sign, verify_signature


@pytest.mark.parametrize("name", ["m1", "A_b.c-d", "_x", "a" * 96, "x1.5"])
def test_repo_names_valid(name: str) -> None:
    assert RepoId.parse(RepoType.MODEL, "alice", name).key == f"model/alice/{name}"


@pytest.mark.parametrize(
    "name", ["", "-a", "a-", ".a", "a.", "a--b", "a..b", "a.git", "a" * 97, "a/b", "a b", "é"]
)
def test_repo_names_invalid(name: str) -> None:
    with pytest.raises(e.InvalidNameError):
        RepoId.parse(RepoType.MODEL, "alice", name)


def test_reserved_namespaces_are_refused() -> None:
    with pytest.raises(e.InvalidNameError):
        RepoId.parse(RepoType.MODEL, "datasets", "x")


@pytest.mark.parametrize("ref", ["main", "dev/x", "v1.0", "feature_2"])
def test_ref_names_valid(ref: str) -> None:
    assert check_ref_name(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "..",
        "a..b",
        "-x",
        "x/",
        "x.lock",
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
        "0123456789abcdef0123456789abcdef01234567",
        "a\x01",
    ],
)
def test_ref_names_invalid(ref: str) -> None:
    with pytest.raises(e.InvalidRevisionError):
        check_ref_name(ref)


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../b",
        "/abs",
        "C:/x",
        "a\\b",
        "a\x00b",
        ".git/x",
        "a/.git/b",
        "a/.cache/b",
        "./a",
        "a//b",
        "a/",
        "",
        "x" * 1100,
    ],
)
def test_repo_paths_invalid(path: str) -> None:
    with pytest.raises(e.InvalidPathError):
        check_repo_path(path)


@pytest.mark.parametrize("path", ["a.txt", "sub dir/ünï cödé.txt", ".gitattributes", "a/b/c"])
def test_repo_paths_valid(path: str) -> None:
    assert check_repo_path(path) == path


def test_digest_text_form_and_validation() -> None:
    hex_ = "ab" * 32
    assert str(Digest(hex_)) == f"blake3:{hex_}" and Digest.parse(f"blake3:{hex_}").hex == hex_
    with pytest.raises(e.InvalidError):
        Digest("xyz")


def test_commit_id_is_deterministic_and_content_derived() -> None:
    entry = TreeEntry("a.txt", hash_bytes(b"a").blake3, "s", 1, False)

    def make(tree: list[TreeEntry]) -> str:
        return commit_id(
            repo_key="model/a/b",
            incarnation="i",
            parent=None,
            author="a",
            title="t",
            message="",
            created_ms=1,
            tree=tree,
        )

    first = make([entry])
    assert first == make([entry])
    assert len(first) == 40 and first == first.lower() and int(first, 16) >= 0
    assert make([TreeEntry("b.txt", entry.blake3, "s", 1, False)]) != first


def test_tree_entry_etag_and_pointer() -> None:
    data = b"hello world"
    hashes = hash_bytes(data)
    regular = TreeEntry("a", hashes.blake3, hashes.sha256, 11, False, hashes.git_sha1)
    lfs = TreeEntry("a", hashes.blake3, hashes.sha256, 11, True, hashes.git_sha1)
    assert regular.etag == regular.oid == "95d09f2b10159347eece71399a7e2e907ea3df4f"
    assert lfs.etag == hashes.sha256
    assert lfs.pointer == (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + hashes.sha256.encode()
        + b"\nsize 11\n"
    )


def test_default_gitattributes_route_weights_to_lfs() -> None:
    spec = lfs_spec(DEFAULT_GITATTRIBUTES)
    for path in ("m.safetensors", "deep/dir/m.ckpt", "w.bin", "a.gguf", "data.parquet"):
        assert spec.match_file(path), path
    for path in ("config.json", "README.md", "tokenizer.txt"):
        assert not spec.match_file(path), path
    assert ignore_spec("*.log\n").match_file("logs/x.log")


def test_tokens_hash_and_signatures() -> None:
    token = new_token()
    assert token.startswith("myd_") and hash_token(token) != token and len(hash_token(token)) == 64
    signature = sign("secret", "oid", "5", "99")
    assert verify_signature("secret", signature, "oid", "5", "99")
    assert not verify_signature("secret", signature, "oid", "6", "99")
    assert not verify_signature("other", signature, "oid", "5", "99")


def test_every_error_code_is_unique_and_maps_to_its_family_status() -> None:
    classes = e.all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    families = {
        e.UnauthorizedError: 401,
        e.ForbiddenError: 403,
        e.NotFoundError: 404,
        e.ConflictError: 409,
        e.PeerError: 409,
        e.PreconditionError: 412,
        e.TooLargeError: 413,
        e.InvalidError: 400,
        e.StorageError: 503,
    }
    for cls in classes:
        family = next((f for f in families if issubclass(cls, f)), None)
        expected = families[family] if family else 500
        assert status_of(cls("x")) == expected, cls
