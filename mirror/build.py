"""Build the push target for a mirror kind: the one place that knows every backend."""

from __future__ import annotations

from mirror.targets import RemoteCommits, Target
from registry.domain.errors import InvalidError


def build_target(
    kind: str,
    name: str,
    url: str | None,
    token: str | None,
    remotes: RemoteCommits | None,
    *,
    allow_private_redirects: bool = False,
) -> Target:
    # Backends are imported when used: boto3 and huggingface_hub are heavy, and the latter
    # reads its settings (HF_HUB_DISABLE_XET, ...) from the environment at import.
    match kind:
        case "s3":
            from mirror.s3_target import S3Bucket

            if url is None:
                raise InvalidError("An s3 mirror needs s3://bucket[/prefix]")
            return S3Bucket(url)
        case "hf":
            from mirror.hub import HubTarget

            return HubTarget(name, url, token, remotes)
        case "node":
            from mirror.node import NodeTarget

            if url is None:
                raise InvalidError("A node mirror needs the node's URL")
            return NodeTarget(
                name, url, token, remotes, allow_private_redirects=allow_private_redirects
            )
    raise InvalidError(f"Unknown mirror kind {kind!r}")
