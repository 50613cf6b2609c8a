"""Repo identities, revision names and repo file paths, with the Hub's validation rules."""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from registry.domain.errors import (
    InvalidError,
    InvalidNameError,
    InvalidPathError,
    InvalidRevisionError,
)

NAME_PART = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
# Namespaces that would collide with top-level routes of the node.
RESERVED_NAMESPACES = frozenset(
    {
        "api",
        "v1",
        "datasets",
        "spaces",
        "models",
        "lfs",
        "metrics",
        "status",
        "static",
        "docs",
        "openapi.json",
        "kernels",
        "search",  # pages: registry/api/routes/pages.py and page_forms.py
        "new",
        "signin",
        "signout",
        "redoc",
    }
)
# The namespace segment standing for "none" in a URL path inside the node: requests for a repo
# id without a namespace (`gpt2`) are routed as `~/gpt2` (registry.api.paths), never stored so.
NO_NAMESPACE = "~"
MAX_PATH_BYTES = 1024
RECOVERED = "recovered/"  # branches keeping heads a history lost, on the node and on mirrors
RECOVERED_FROM = "recovered-from: "  # the message of a commit that brought a lost head back


class RepoType(enum.StrEnum):
    MODEL = "model"
    DATASET = "dataset"

    @property
    def plural(self) -> str:
        return f"{self.value}s"

    @property
    def url_prefix(self) -> str:
        """The web prefix the Hub puts before `namespace/name` for this type."""
        return "" if self is RepoType.MODEL else f"{self.plural}/"

    @classmethod
    def from_plural(cls, plural: str) -> RepoType | None:
        return next((t for t in cls if t.plural == plural), None)

    @classmethod
    def parse(cls, value: str | None) -> RepoType:
        try:
            return cls(value or "model")
        except ValueError:
            raise InvalidNameError(f"Unsupported repo type {value!r}") from None


@dataclass(frozen=True, order=True)
class RepoId:
    type: RepoType
    namespace: str
    name: str

    @classmethod
    def parse(cls, repo_type: RepoType, namespace: str, name: str) -> RepoId:
        for part in (namespace, name):
            _check_part(part)
        if namespace.lower() in RESERVED_NAMESPACES:
            raise InvalidNameError(f"Namespace {namespace!r} is reserved")
        return cls(repo_type, namespace, name)

    @classmethod
    def canonical(cls, repo_type: RepoType, name: str) -> RepoId:
        """A repo id without a namespace (`gpt2`), as the Hub's oldest repos have: stored
        with the namespace "", which `parse` never accepts."""
        _check_part(name)
        return cls(repo_type, "", name)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def key(self) -> str:
        """Stable text key, unique across types: `model/alice/m1`."""
        return f"{self.type.value}/{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.key


def _check_part(part: str) -> None:
    if not NAME_PART.match(part) or "--" in part or ".." in part or part.endswith(".git"):
        raise InvalidNameError(
            f"Invalid repo name part {part!r}: 1-96 of [A-Za-z0-9_.-], starting and ending with "
            "a letter, digit or '_', without '--', '..' or a '.git' suffix"
        )


def check_ref_name(name: str) -> str:
    """Validate a branch or tag name (git's rules, plus: never a 40-hex commit id)."""
    bad = (
        not name
        or len(name) > 255
        or name.startswith(("-", "/", ".", "refs/"))
        or name.endswith(("/", ".", ".lock"))
        or any(s in name for s in ("..", "//", "@{", "\\", " ", "~", "^", ":", "?", "*", "["))
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or COMMIT_SHA.match(name) is not None
    )
    if bad:
        raise InvalidRevisionError(f"Invalid reference name {name!r}")
    return name


def short_ref(ref: str) -> str:
    """A branch or tag's short name: `refs/heads/main` is `main`, `refs/tags/v1` is `v1`."""
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def recovered_branches(ref: str) -> Iterator[str]:
    """Names for a branch keeping where `ref` (a branch or tag) pointed before a history lost
    it: `recovered/<name>`, then `-2`, `-3` ... when taken (a kept ref is not kept twice)."""
    name = short_ref(ref).removeprefix("refs/")
    name = name.removeprefix(RECOVERED)
    for n in range(1, 100):
        yield check_ref_name(f"{RECOVERED}{name}" + (f"-{n}" if n > 1 else ""))
    raise InvalidError(f"No free branch name to keep {ref} under {RECOVERED}")


def check_repo_path(path: str) -> str:
    """Validate a file path inside a repo; reject anything that could escape or confuse."""
    problem = _path_problem(path)
    if problem:
        raise InvalidPathError(f"Invalid path {path!r}: {problem}")
    return path


def _path_problem(path: str) -> str | None:
    if not path:
        return "empty path"
    if len(path.encode()) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    if "\x00" in path or any(ord(c) < 32 for c in path):
        return "control character"
    if "\\" in path:
        return "backslash"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "absolute path"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' segment"
    if any(p in (".git", ".cache") for p in parts):
        return "'.git' or '.cache' segment"
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix/`); the prefix may be ""."""
    if not url.startswith("s3://"):
        raise InvalidError(f"Not an S3 URL (s3://bucket/prefix): {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidError(f"An S3 URL names a bucket: {url!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def qualified_key(key: str, home: str) -> str:
    """The id a node gives a peer's repo whose id it holds already for another home:
    `type/namespace.home/name` (a valid namespace for the Hub client; the home's id shortened
    to a hash where it would not fit)."""
    kind, namespace, name = key.split("/")
    candidate = f"{namespace}.{home}" if namespace else home  # `gpt2` becomes `home/gpt2`
    try:
        _check_part(candidate)
    except InvalidNameError:
        digest = hashlib.blake2b(home.encode(), digest_size=6).hexdigest()
        candidate = f"{namespace[:80].rstrip('.-')}.{digest}" if namespace else digest
    return f"{kind}/{candidate}/{name}"
