"""Which redirects a client of peers and mirrors follows: http(s) only, and never from one kind
of address into a more private one unless allowed (`registry.domain.urls.redirect_refusal`).

The check runs as an httpx response hook, before httpx builds the next request, so a refused
redirect is never sent anywhere. Host names are looked up here; a name that resolves
differently the moment httpx connects (DNS rebinding) is beyond what this guard sees.
"""

from __future__ import annotations

import socket

import httpx

from registry.domain.errors import RedirectRefusedError
from registry.domain.urls import HTTP_SCHEMES, address_kind, redirect_refusal, safe_url


def _kinds(host: str) -> set[str]:
    """The address kinds a host stands for (an IP literal, or every address its name has)."""
    try:
        return {address_kind(host)}
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {address_kind(str(info[4][0])) for info in found}


def shown(url: httpx.URL) -> str:
    """A URL as an error message may show it: no credentials, no query (signatures)."""
    return safe_url(str(url.copy_with(query=None, fragment=None)))


class RedirectGuard:
    """An httpx response hook raising RedirectRefusedError for a redirect it must not follow."""

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    def __call__(self, response: httpx.Response) -> None:
        if not response.has_redirect_location:
            return
        source = response.request.url
        target = source.join(response.headers["location"])
        reason = self._refusal(source, target)
        if reason is not None:
            raise RedirectRefusedError(
                f"{shown(source)} answered {response.status_code}, a redirect to "
                f"{shown(target)}, not followed: {reason}"
            )

    def check(self, source: str, target: str) -> None:
        """As the hook, for a redirect met outside httpx (a ranged GET through http.client)."""
        reason = self._refusal(httpx.URL(source), httpx.URL(target))
        if reason is not None:
            raise RedirectRefusedError(
                f"{shown(httpx.URL(source))} redirected to {shown(httpx.URL(target))}, "
                f"not followed: {reason}"
            )

    def _refusal(self, source: httpx.URL, target: httpx.URL) -> str | None:
        if target.scheme not in HTTP_SCHEMES:
            return redirect_refusal(set(), target.scheme, set(), allow_private=self.allow_private)
        kinds = _kinds(target.host)
        if not kinds:
            return f"its host {target.host!r} does not resolve"
        return redirect_refusal(
            _kinds(source.host), target.scheme, kinds, allow_private=self.allow_private
        )
