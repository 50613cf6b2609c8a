"""Peer and mirror URLs and credentials: validation, the redirect rule, redaction, sealing."""

from __future__ import annotations

import logging
import sys

import httpx
import pytest
from pydantic import ValidationError

from registry.cli.common import RedactingFilter
from registry.client import RegistryClient, RetryPolicy
from registry.domain import errors as e
from registry.domain.redaction import redact
from registry.domain.tokens import check_credential
from registry.domain.urls import (
    address_kind,
    check_http_url,
    check_s3_url,
    redirect_refusal,
    safe_url,
)
from registry.service.credentials import CredentialBox
from registry.settings import Settings

KEY = "k" * 32


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.example:8000", "http://a.example:8000"),
        ("  https://a.example/base/ ", "https://a.example/base"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_check_http_url_accepts_http_and_https(url: str, expected: str) -> None:
    assert check_http_url(url, "A peer's url") == expected


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", e.UrlSchemeError),
        ("ftp://a.example", e.UrlSchemeError),
        ("s3://bucket", e.UrlSchemeError),
        ("gopher://a.example:70/", e.UrlSchemeError),
        ("a.example:8000", e.UrlSchemeError),
        ("https://bob:hunter2secret@a.example", e.UrlCredentialsError),
        ("https://hunter2secret@a.example", e.UrlCredentialsError),
        ("http://", e.UrlHostError),
        ("http:///path", e.UrlHostError),
        ("http://:8000", e.UrlHostError),
        ("http://a.example:99999", e.InvalidUrlError),
        ("http://a.example:port", e.InvalidUrlError),
        ("http://[::1", e.InvalidUrlError),
        ("http://a.example/?token=x", e.InvalidUrlError),
        ("http://a.example/#x", e.InvalidUrlError),
        ("http://a.exa mple", e.InvalidUrlError),
        ("http://a.example\r\nX-Injected: 1", e.InvalidUrlError),
    ],
)
def test_check_http_url_refuses(url: str, error: type[e.RegistryError]) -> None:
    with pytest.raises(error) as caught:
        check_http_url(url, "A peer's url")
    assert type(caught.value) is error
    assert isinstance(caught.value, e.UnprocessableError)
    assert "hunter2secret" not in str(caught.value)


def test_check_http_url_tells_to_use_the_token_field() -> None:
    with pytest.raises(e.UrlCredentialsError, match="`token` field"):
        check_http_url("https://u:p@a.example", "A node mirror's url")


def test_check_s3_url() -> None:
    assert check_s3_url("s3://bucket/prefix/", "An s3 mirror's url") == "s3://bucket/prefix"
    for url, error in [
        ("http://bucket", e.UrlSchemeError),
        ("s3://", e.UrlHostError),
        ("s3:///prefix", e.UrlHostError),
        ("s3://key:secretkey@bucket", e.UrlCredentialsError),
    ]:
        with pytest.raises(error):
            check_s3_url(url, "An s3 mirror's url")


def test_safe_url_hides_userinfo() -> None:
    assert safe_url("see https://u:pw@h.example/x and ftp://pw@h") == (
        "see https://***@h.example/x and ftp://***@h"
    )
    assert safe_url("http://h.example/a@b") == "http://h.example/a@b"  # '@' in the path


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "reserved"),
        ("::", "reserved"),
        ("224.0.0.1", "reserved"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_address_kind(address: str, kind: str) -> None:
    assert address_kind(address) == kind


@pytest.mark.parametrize(
    ("origin", "scheme", "target", "allow", "refused"),
    [
        ({"public"}, "https", {"public"}, False, False),
        ({"loopback"}, "http", {"loopback"}, False, False),  # a test node to its moto bucket
        ({"private"}, "http", {"private"}, False, False),  # a LAN node to its MinIO
        ({"private"}, "https", {"public"}, False, False),
        ({"public"}, "http", {"loopback"}, False, True),
        ({"public"}, "http", {"private"}, False, True),
        ({"public"}, "http", {"public", "private"}, False, True),  # any address counts
        ({"loopback"}, "http", {"private"}, False, True),
        ({"loopback"}, "http", {"reserved"}, False, True),  # 0.0.0.0
        ({"private"}, "http", {"link-local"}, False, True),  # 169.254.169.254
        ({"public"}, "http", {"loopback"}, True, False),
        ({"loopback"}, "http", {"reserved"}, True, False),
        ({"public"}, "file", set(), False, True),
        ({"loopback"}, "file", set(), True, True),  # never, whatever the setting
        ({"public"}, "ftp", set(), True, True),
    ],
)
def test_redirect_refusal(
    origin: set[str], scheme: str, target: set[str], allow: bool, refused: bool
) -> None:
    reason = redirect_refusal(origin, scheme, target, allow_private=allow)
    assert (reason is not None) == refused, reason


def test_redirect_refusal_names_the_setting() -> None:
    reason = redirect_refusal({"public"}, "http", {"loopback"}, allow_private=False)
    assert reason is not None and "MODELYARD_ALLOW_PRIVATE_REDIRECTS" in reason


def _redirecting(location: str, seen: list[str]) -> httpx.MockTransport:
    """A transport (no network) answering the first request with a redirect to `location`."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if len(seen) == 1:
            return httpx.Response(302, headers={"location": location})
        return httpx.Response(200, json={"node_id": "n", "version": "0", "serial": 0, "epoch": "e"})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("origin", "location", "allow", "followed"),
    [
        ("http://8.8.8.8", "http://127.0.0.1:8000/v1/health", False, False),
        ("http://8.8.8.8", "http://10.0.0.5/v1/health", False, False),
        ("http://8.8.8.8", "http://169.254.169.254/latest/meta-data", False, False),
        ("http://8.8.8.8", "http://[::1]/v1/health", False, False),
        ("http://8.8.8.8", "file:///etc/passwd", False, False),
        ("http://8.8.8.8", "file:///etc/passwd", True, False),
        ("http://8.8.8.8", "https://1.1.1.1/v1/health", False, True),
        ("http://8.8.8.8", "/elsewhere", False, True),  # same host
        ("http://8.8.8.8", "http://127.0.0.1:8000/v1/health", True, True),
        ("http://10.0.0.4", "http://10.0.0.5/v1/health", False, True),
    ],
)
def test_client_redirects_follow_the_rule(
    origin: str, location: str, allow: bool, followed: bool
) -> None:
    seen: list[str] = []
    with RegistryClient(
        origin,
        retry=RetryPolicy(attempts=1),
        transport=_redirecting(location, seen),
        allow_private_redirects=allow,
    ) as client:
        if followed:
            assert client.health().node_id == "n"
            assert len(seen) == 2
        else:
            with pytest.raises(e.RedirectRefusedError, match="not followed"):
                client.health()
            assert len(seen) == 1  # nothing was sent where the redirect pointed


def test_client_does_not_follow_redirects_of_writes() -> None:
    seen: list[str] = []
    transport = _redirecting("https://1.1.1.1/api/repos/create", seen)
    with RegistryClient("http://8.8.8.8", transport=transport) as client:
        with pytest.raises(e.UpstreamError, match="does not follow"):
            client.hub("POST", "/api/repos/create", json={})
    assert len(seen) == 1


def test_client_errors_show_no_credentials_or_signatures() -> None:
    seen: list[str] = []
    location = "https://u:pw9@1.1.1.1/b?X-Amz-Signature=5ec2e7"
    with RegistryClient("http://8.8.8.8", transport=_redirecting(location, seen)) as client:
        with pytest.raises(e.UpstreamError) as caught:
            client.hub("GET", "/x")
    assert "pw9" not in str(caught.value) and "5ec2e7" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://bob:pw4bob@h.example/x", "pw4bob"),
        ("url=https://h.example/b?X-Amz-Signature=0a1b2c3d&X-Amz-Credential=AKIAX", "0a1b2c3d"),
        ("url=https://h.example/b?X-Amz-Signature=0a1b2c3d&X-Amz-Credential=AKIAX", "AKIAX"),
        ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAX/1, Signature=f00d'}", "f00d"),
        ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAX/1, Signature=f00d'}", "AKIAX"),
        ("{'X-Amz-Security-Token': b'FQoGZXIvYXdz'}", "FQoGZXIvYXdz"),
        ("Illegal header value b'Bearer sekrit.value\\n'", "sekrit.value"),
        ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("peer said: bad token myd_3qAbCdEfGhIjKlMn", "3qAbCdEfGhIjKlMn"),
        ("hub token hf_AbCdEfGhIjKlMnOpQrStUv", "AbCdEfGhIjKlMnOpQrStUv"),
        ("/lfs/upload?sig=abcdef0123&expires=1", "abcdef0123"),
        ('{"token": "opaque-value-1"}', "opaque-value-1"),
        ("password=hunter2", "hunter2"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_keeps_ordinary_lines() -> None:
    line = "peer state peer=p-1a2b state=down error=ConnectError: refused token_set=True"
    assert redact(line) == line
    assert redact("mirror added name=b kind=node url=http://b:8000") == (
        "mirror added name=b kind=node url=http://b:8000"
    )


def test_redacting_filter_scrubs_message_args_and_traceback() -> None:
    logger = logging.getLogger("tests.redaction")
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "fetch %s failed", ("https://u:pw1@h/",), None
    )
    try:
        raise ValueError("Illegal header value b'Bearer myd_tracebacktoken123'")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "pw1" not in text and "myd_tracebacktoken123" not in text
    assert "fetch https://***@h/ failed" in text and "ValueError" in text


@pytest.mark.parametrize("token", ["myd_abc\n", " myd_abc", "my d", "tök", "a\tb", "\x00"])
def test_check_credential_refuses_unprintable(token: str) -> None:
    with pytest.raises(e.InvalidCredentialError) as caught:
        check_credential(token, "A peer's token")
    assert token not in caught.value.message


def test_check_credential_accepts_tokens_and_none() -> None:
    assert check_credential("myd_AbC-_x.~+/=", "t") == "myd_AbC-_x.~+/="
    assert check_credential("", "t") is None and check_credential(None, "t") is None


def test_credential_box_seals_and_opens_with_the_same_key() -> None:
    box = CredentialBox(KEY)
    sealed = box.seal("myd_peer_secret")
    assert sealed is not None and sealed.startswith("fernet:") and "myd_peer_secret" not in sealed
    assert box.seal("myd_peer_secret") != sealed  # a fresh IV each time
    assert box.unseal(sealed, "peer p") == "myd_peer_secret"
    assert CredentialBox(KEY).unseal(sealed, "peer p") == "myd_peer_secret"
    assert box.seal(None) is None and box.unseal(None, "peer p") is None


def test_credential_box_without_a_key_keeps_tokens_as_given() -> None:
    box = CredentialBox(None)
    assert box.seal("myd_x") == "myd_x" and box.unseal("myd_x", "peer p") == "myd_x"
    assert box.reseal("myd_x", "peer p") is None  # nothing to change


def test_credential_box_refuses_another_key_or_none() -> None:
    sealed = CredentialBox(KEY).seal("myd_peer_secret")
    with pytest.raises(e.CredentialsKeyError, match="another key"):
        CredentialBox("z" * 32).unseal(sealed, "peer p")
    with pytest.raises(e.CredentialsKeyError, match="MODELYARD_CREDENTIALS_KEY"):
        CredentialBox(None).unseal(sealed, "peer p")


def test_credential_box_reseals_plain_tokens_once_a_key_is_set() -> None:
    box = CredentialBox(KEY)
    sealed = box.reseal("myd_plain", "peer p")
    assert sealed is not None and box.unseal(sealed, "peer p") == "myd_plain"
    assert box.reseal(sealed, "peer p") is None


def test_settings_refuse_bad_peer_urls_and_short_keys() -> None:
    for url in ("file:///etc/passwd", "http://u:pw5@h.example", "http://"):
        with pytest.raises(ValidationError) as caught:
            Settings(sync={"peers": [{"url": url}]})
        assert "pw5" not in str(caught.value)
    with pytest.raises(ValidationError, match="InvalidCredential"):
        Settings(sync={"peers": [{"url": "http://h", "token": "a b"}]})
    with pytest.raises(ValidationError, match="32 characters"):
        Settings(credentials_key="short")


def test_settings_never_show_a_peer_token() -> None:
    token = "myd_in_settings_0123456789"
    settings = Settings(sync={"peers": [{"url": "http://h", "token": token}]})
    assert token not in repr(settings) and token not in str(settings)
    with pytest.raises(ValidationError) as caught:
        Settings(sync={"peers": [{"url": "http://h", "token": token}] * 2})
    assert "unique" in str(caught.value) and token not in str(caught.value)
