"""Peer and mirror URLs: which are accepted, how they are shown, where a redirect may lead.

Pure (urllib and ipaddress). Accepted: http(s)://host[:port][/path] for peers, node mirrors
and Hub endpoints; s3://bucket[/prefix] for S3 mirrors. Never credentials in the URL (a token
goes in its own field, which is never shown back), never spaces, control characters, a query
or a fragment. Looking a host name up, to judge a redirect, is the caller's I/O
(`registry.client.redirects`).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from registry.domain.errors import (
    InvalidUrlError,
    UrlCredentialsError,
    UrlHostError,
    UrlSchemeError,
)

HTTP_SCHEMES = frozenset({"http", "https"})
ALLOW_PRIVATE_SETTING = "MODELYARD_ALLOW_PRIVATE_REDIRECTS"
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")


def safe_url(url: str) -> str:
    """The URL with any user:password@ replaced by ***@, fit for messages and logs."""
    return _USERINFO.sub(r"\1***@", url)


def _split(url: str, what: str) -> SplitResult:
    text = url.strip()
    if _UNSAFE.search(text):
        raise InvalidUrlError(f"{what} contains spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise InvalidUrlError(f"{what} is not a valid URL ({exc}): {safe_url(text)!r}") from None
    if "@" in parts.netloc:
        raise UrlCredentialsError(
            f"{what} must not carry credentials (user:password@host): "
            "give the token in the `token` field instead"
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidUrlError(f"{what} must not have a query or a fragment: {text!r}")
    return parts


def check_http_url(url: str, what: str) -> str:
    """`url` trimmed and without a trailing slash, if it is http(s)://host[:port][/path].

    Raises:
        UrlSchemeError, UrlCredentialsError, UrlHostError, InvalidUrlError: what is wrong.
    """
    parts = _split(url, what)
    if parts.scheme not in HTTP_SCHEMES:
        raise UrlSchemeError(f"{what} must be http(s)://host[:port], got {safe_url(url.strip())!r}")
    if not parts.hostname:
        raise UrlHostError(f"{what} names no host: {url.strip()!r}")
    return url.strip().rstrip("/")


def check_s3_url(url: str, what: str) -> str:
    """`url` trimmed and without a trailing slash, if it is s3://bucket[/prefix]."""
    parts = _split(url, what)
    if parts.scheme != "s3":
        raise UrlSchemeError(f"{what} must be s3://bucket[/prefix], got {safe_url(url.strip())!r}")
    if not parts.netloc:
        raise UrlHostError(f"{what} names no bucket (s3://bucket[/prefix]): {url.strip()!r}")
    return url.strip().rstrip("/")


def address_kind(address: str) -> str:
    """public, private, loopback, link-local, or reserved (also: unspecified, multicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "reserved"
    return "public" if ip.is_global else "private"


def redirect_refusal(
    origin_kinds: set[str], scheme: str, target_kinds: set[str], *, allow_private: bool
) -> str | None:
    """Why a redirect must not be followed, or None when it may be.

    A redirect stays on http(s). It may lead to public addresses, or to the kind of address
    the redirecting request went to (a node on loopback or on a private network sending the
    client to its own bucket there), but never from there into another non-public kind (a
    public node into loopback, a loopback node to 0.0.0.0 or a cloud metadata address)
    unless private redirects are allowed.
    """
    if scheme not in HTTP_SCHEMES:
        return f"it leads to a {scheme}: URL (only http and https are followed)"
    other = sorted(target_kinds - {"public"} - origin_kinds)
    if other and not allow_private:
        return (
            f"it leads to a {'/'.join(other)} address (allowed only with {ALLOW_PRIVATE_SETTING})"
        )
    return None
