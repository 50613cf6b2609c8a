"""Secrets: the node's tokens are stored only as hashes; peer and mirror tokens are sealed at
rest (with a credentials key), used, and never shown back or logged; peer and mirror URLs are
checked, and a peer's or mirror's redirect is followed only where the rule allows."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from click.testing import CliRunner
from huggingface_hub import HfApi
from pydantic import SecretStr

from registry.cli import cli
from registry.domain.access import CONSOLE
from registry.domain.errors import CredentialsKeyError
from registry.domain.tokens import hash_token
from registry.metadata.db import Database
from registry.runtime import Runtime
from registry.service.auth import AuthService
from tests.conftest import (
    ADMIN_TOKEN,
    FAST_SYNC,
    TEST_DATABASE,
    RunningNode,
    ServerThread,
    node_settings,
)
from tests.e2e.nodeproc import NodeProcess
from tests.faultproxy import Fault, FaultProxy

KEY = "credentials-key-" + "0123456789abcdef" * 2
FAST_MIRROR = {"interval": 0.05, "retry_initial": 0.1, "retry_max": 0.5}
FAILING = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def wait_until(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.05)


def dump_database(url: str) -> str:
    """Every row of every table (SQLite or PostgreSQL), as text."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
            assert {"token", "peer", "mirror"} <= set(tables), tables
            select = 'SELECT * FROM "{}"'
            rows = {t: connection.execute(sqlalchemy.text(select.format(t))).all() for t in tables}
            return "\n".join(f"{table}: {found}" for table, found in rows.items())
    finally:
        engine.dispose()


def raw_files(data_dir: Path) -> bytes:
    """Every byte under a data dir (the SQLite file, its WAL, blobs), for SQLite runs."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def token_on(node: RunningNode, user: str, *, write: bool) -> str:
    db = Database(node.settings.effective_database_url)
    try:
        return AuthService(db).create_token(user, write=write, label="test")
    finally:
        db.dispose()


def publish(node: RunningNode, repo: str, *, private: bool = False) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo(repo, private=private)
    api.upload_file(path_or_fileobj=b"weights" * 1000, path_in_repo="w.bin", repo_id=repo)


def has_repo(node: RunningNode, repo: str) -> bool:
    with node.client(node.admin_token) as http:
        return http.get(f"/api/models/{repo}").status_code == 200


def listing(node: RunningNode, what: str) -> list[dict[str, Any]]:
    with node.client(node.admin_token) as http:
        answer = http.get(f"/v1/{what}")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def public_surfaces(node: RunningNode) -> str:
    """What the node shows about its peers and mirrors, to its admin and to anyone."""
    with node.client(node.admin_token) as http:
        answers = [http.get(p) for p in ("/v1/peers", "/v1/mirrors", "/v1/status", "/status")]
        answers += [http.get(f"/v1/mirrors/{m['name']}") for m in listing(node, "mirrors")]
        answers.append(http.get("/metrics"))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return "\n".join(f"{a.headers}\n{a.text}" for a in answers)


def absent(secret: str, text: str) -> bool:
    """Neither the secret nor a recognisable tail of it (an old mask showed the last 4)."""
    return secret not in text and secret[-8:] not in text


# Hash at rest -----------------------------------------------------------------------------


def test_node_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "node", node_id="node").model_copy(
        update={"admin_token": None}
    )
    first = Runtime.open(settings)
    first_start = first.boot()
    first.close()
    assert first_start is not None
    configured = "myd_configured_" + secrets.token_urlsafe(24)
    settings = settings.model_copy(update={"admin_token": SecretStr(configured)})
    env = {"MODELYARD_DATABASE_URL": settings.database_url} if settings.database_url else {}
    made = CliRunner().invoke(
        cli,
        ["token", "create", "--user", "alice", "--write", "--data-dir", str(settings.data_dir)],
        env=env,
    )
    assert made.exit_code == 0, made.output
    from_cli = made.stdout.strip()
    node = Runtime.open(settings)
    node.boot()
    from_library = node.auth.create_token("bob", write=False, label="library")
    server = ServerThread(node.app())
    server.start()
    tokens = {first_start: "admin", configured: "admin", from_cli: "alice", from_library: "bob"}
    try:
        for token, user in tokens.items():  # each one works ...
            whoami = httpx.get(
                f"{server.url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"}
            )
            assert whoami.json()["name"] == user, whoami.text
        shown = "\n".join(
            httpx.get(f"{server.url}{p}").text for p in ("/v1/status", "/status", "/metrics")
        )
    finally:
        server.stop()
        node.close()
    stored = dump_database(settings.effective_database_url)
    for token in tokens:  # ... and only its hash is kept
        assert token not in stored and token not in shown
        assert hash_token(token) in stored
    if TEST_DATABASE == "sqlite":
        on_disk = raw_files(settings.data_dir)
        assert not any(token.encode() in on_disk for token in tokens)


# Never shown back, sealed at rest, still used ---------------------------------------------


def test_peer_and_mirror_tokens_are_sealed_used_and_never_shown(
    start_node: Callable[..., RunningNode],
) -> None:
    home, target = start_node("home"), start_node("target")
    publish(home, "reader/private-model", private=True)  # replicated only with a token
    peer_token = token_on(home, "reader", write=False)
    mirror_token = token_on(target, "admin", write=True)
    node = start_node("node", credentials_key=KEY, sync=FAST_SYNC, mirror=FAST_MIRROR)
    with node.client(node.admin_token) as http:
        peer = http.post("/v1/peers", json={"url": home.url, "token": peer_token})
        mirror = http.post(
            "/v1/mirrors",
            json={"name": "t", "kind": "node", "url": target.url, "token": mirror_token},
        )
    assert peer.status_code == mirror.status_code == 201, (peer.text, mirror.text)
    assert peer.json()["token_set"] is mirror.json()["token_set"] is True
    assert "token" not in peer.json() and "token" not in mirror.json()
    publish(node, "admin/pushed")
    wait_until(lambda: has_repo(node, "reader/private-model"), "private repo replicated")
    wait_until(lambda: has_repo(target, "admin/pushed"), "repo pushed to the node mirror")

    shown = public_surfaces(node)
    assert absent(peer_token, shown) and absent(mirror_token, shown)
    assert listing(node, "peers")[0]["token_set"] is True
    stored = dump_database(node.settings.effective_database_url)
    assert absent(peer_token, stored) and absent(mirror_token, stored)
    assert stored.count("fernet:") == 2


def test_refused_peers_and_mirrors_answer_422_echo_nothing_and_store_nothing(
    node: RunningNode, s3_bucket: str
) -> None:
    token = "myd_refused_" + secrets.token_urlsafe(24)
    peer_cases: list[tuple[dict[str, Any], str]] = [
        ({"url": f"http://reader:{token}@127.0.0.1:9"}, "UrlHasCredentials"),
        ({"url": f"http://{token}@127.0.0.1:9"}, "UrlHasCredentials"),
        ({"url": "file:///etc/passwd", "token": token}, "UrlSchemeNotAllowed"),
        ({"url": "gopher://127.0.0.1:70", "token": token}, "UrlSchemeNotAllowed"),
        ({"url": "http://", "token": token}, "UrlHostMissing"),
        ({"url": "http://127.0.0.1:9/?x=1", "token": token}, "InvalidUrl"),
        ({"url": "http://127.0.0.1:9", "token": token + "\n"}, "InvalidCredential"),
        ({"url": "http://127.0.0.1:9", "token": token, "blobs": "all"}, "BadRequest"),
    ]
    mirror_cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "node", "url": f"https://u:{token}@127.0.0.1:9"}, "UrlHasCredentials"),
        ({"kind": "node", "url": "file:///etc/passwd"}, "UrlSchemeNotAllowed"),
        ({"kind": "hf", "url": "ftp://127.0.0.1"}, "UrlSchemeNotAllowed"),
        ({"kind": "s3", "url": f"https://{s3_bucket}.s3.example"}, "UrlSchemeNotAllowed"),
        ({"kind": "s3", "url": "s3://"}, "UrlHostMissing"),
        ({"kind": "s3", "url": f"s3://key:{token}@{s3_bucket}"}, "UrlHasCredentials"),
        ({"kind": "node", "url": "http:///x"}, "UrlHostMissing"),
        ({"kind": "node", "url": "http://127.0.0.1:9", "token": f"{token} x"}, "InvalidCredential"),
        ({"kind": "node", "url": "http://127.0.0.1:9", "extra": 1}, "BadRequest"),
    ]
    answers = []
    with node.client(node.admin_token) as http:
        for body, code in peer_cases:
            answers.append((http.post("/v1/peers", json=body), code))
        for body, code in mirror_cases:
            answers.append(
                (http.post("/v1/mirrors", json={"name": "m", "token": token, **body}), code)
            )
        # A duplicate is refused too, without the token in the message.
        assert http.post("/v1/peers", json={"url": "http://127.0.0.1:9"}).status_code == 201
        answers.append(
            (
                http.post("/v1/peers", json={"url": "http://127.0.0.1:9/", "token": token}),
                "Conflict",
            )
        )
    for answer, code in answers:
        assert answer.headers["X-Error-Code"] == code == answer.json()["code"], answer.text
        assert answer.status_code == (409 if code == "Conflict" else 422), answer.text
        assert absent(token, f"{answer.headers}\n{answer.text}")
    assert [p["url"] for p in listing(node, "peers")] == ["http://127.0.0.1:9"]
    assert listing(node, "mirrors") == []


def test_cli_refuses_bad_urls_and_seals_tokens_with_the_key(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "node", node_id="node")
    env = {"MODELYARD_CREDENTIALS_KEY": KEY}
    if settings.database_url:
        env["MODELYARD_DATABASE_URL"] = settings.database_url
    base = ["--data-dir", str(settings.data_dir)]
    token = "myd_cli_" + secrets.token_urlsafe(24)
    runner = CliRunner()
    for args, code in [
        (["peer", "add", f"https://u:{token}@127.0.0.1:9"], "UrlHasCredentials"),
        (["peer", "add", "file:///etc/passwd", "--token", token], "UrlSchemeNotAllowed"),
        (
            ["mirror", "add", "m", "--kind", "node", "--url", "ftp://h", "--token", token],
            "UrlSchemeNotAllowed",
        ),
        (["mirror", "add", "m", "--kind", "s3", "--url", "http://bucket"], "UrlSchemeNotAllowed"),
    ]:
        refused = runner.invoke(cli, [*args, *base], env=env)
        assert refused.exit_code == 2 and code in refused.output, refused.output
        assert absent(token, refused.output)
    added = runner.invoke(
        cli, ["peer", "add", "http://127.0.0.1:9", "--token", token, *base], env=env
    )
    mirrored = runner.invoke(
        cli,
        [
            "mirror",
            "add",
            "m",
            "--kind",
            "node",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            token,
            *base,
        ],
        env=env,
    )
    assert added.exit_code == mirrored.exit_code == 0, (added.output, mirrored.output)
    listed = runner.invoke(cli, ["peer", "list", *base], env=env).output
    listed += runner.invoke(cli, ["mirror", "status", *base], env=env).output
    assert "token=set" in listed and absent(token, listed + added.output + mirrored.output)
    stored = dump_database(settings.effective_database_url)
    assert absent(token, stored) and stored.count("fernet:") == 2


def test_sealed_tokens_need_their_key_and_plain_ones_are_sealed_once_it_is_set(
    tmp_path: Path,
) -> None:
    plain = node_settings(tmp_path / "node", node_id="node")
    token = "myd_plain_" + secrets.token_urlsafe(24)
    node = Runtime.open(plain)
    node.peers.add(CONSOLE, "http://127.0.0.1:9", token, "lazy")
    node.mirrors.add(CONSOLE, "m", "node", "http://127.0.0.1:9", token)
    node.close()
    assert token in dump_database(plain.effective_database_url)  # no key: kept as given

    keyed = plain.model_copy(update={"credentials_key": SecretStr(KEY)})
    node = Runtime.open(keyed)
    try:
        assert node.peers.credential(node.peers.all()[0]) == token
        assert node.mirrors.configs()[0].token == token
    finally:
        node.close()
    assert absent(token, dump_database(plain.effective_database_url))

    with pytest.raises(CredentialsKeyError, match="MODELYARD_CREDENTIALS_KEY"):
        Runtime.open(plain)
    other = plain.model_copy(update={"credentials_key": SecretStr("another-key-" + "9" * 32)})
    with pytest.raises(CredentialsKeyError, match="another key"):
        Runtime.open(other)


# Never logged ------------------------------------------------------------------------------


def record_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text + (record.exc_text or "") + (record.stack_info or "")


def test_no_credential_reaches_any_log_record(
    start_node: Callable[..., RunningNode],
    s3_bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")  # it sets WARNING for itself
    home, target, hub = start_node("home"), start_node("target"), start_node("hub")
    publish(home, "reader/private-model", private=True)
    peer_token = token_on(home, "reader", write=False)
    mirror_token = token_on(target, "admin", write=True)
    hub_token = token_on(hub, "admin", write=True)
    wrong_peer_token = "myd_wrong_peer_" + secrets.token_urlsafe(24)
    wrong_mirror_token = "myd_wrong_mirror_" + secrets.token_urlsafe(24)
    credentials = [peer_token, mirror_token, hub_token, wrong_peer_token, wrong_mirror_token]
    to_home, to_target = FaultProxy(home.port), FaultProxy(target.port)
    to_target.inject(Fault(reply=FAILING, times=1_000_000))
    node = start_node("node", credentials_key=KEY, sync=FAST_SYNC, mirror=FAST_MIRROR)
    peers = [
        {"url": home.url, "token": peer_token, "blobs": "eager"},
        {"url": to_home.url, "token": wrong_peer_token},  # home answers 401
    ]
    covered = "admin/pushed"
    mirrors = [
        {"name": "ok", "kind": "node", "url": target.url, "token": mirror_token},
        {"name": "hub", "kind": "hf", "url": hub.url, "token": hub_token},
        {"name": "bucket", "kind": "s3", "url": f"s3://{s3_bucket}/m"},
        {"name": "unauthorized", "kind": "node", "url": target.url, "token": wrong_mirror_token},
        {"name": "failing", "kind": "node", "url": to_target.url, "token": mirror_token},
    ]
    try:
        with node.client(node.admin_token) as http:
            for body in peers:
                assert http.post("/v1/peers", json=body).status_code == 201
            for body in mirrors:
                added = http.post("/v1/mirrors", json={**body, "repos": covered})
                assert added.status_code == 201, added.text
            refused = http.post("/v1/peers", json={"url": f"http://u:{peer_token}@127.0.0.1:9"})
            assert refused.status_code == 422
        publish(node, covered)
        wait_until(lambda: has_repo(node, "reader/private-model"), "private repo replicated")

        def mirrors_settled() -> bool:
            state = {m["name"]: m for m in listing(node, "mirrors")}
            done = all(state[n]["backlog"] == 0 for n in ("ok", "hub", "bucket"))
            return done and all(state[n]["last_error"] for n in ("unauthorized", "failing"))

        wait_until(mirrors_settled, "mirrors pushed or failing")
        errors = {m["name"]: m["last_error"] for m in listing(node, "mirrors")}
        assert "Unauthorized" in errors["unauthorized"] and "500" in errors["failing"], errors
        wait_until(lambda: "Unauthorized" in peer_error(node, to_home.url), "a peer's 401")
        home.server.stop()  # the peer goes down
        wait_until(lambda: listing(node, "peers")[0]["state"] == "down", "peer down", timeout=30)
        shown = public_surfaces(node)
    finally:
        to_home.close()
        to_target.close()
    assert all(absent(secret, shown) for secret in credentials)
    records = list(caplog.records)
    leaks = [
        (r.name, r.levelname, record_text(r)[:300])
        for r in records
        if any(secret in record_text(r) for secret in [*credentials, KEY])
    ]
    assert leaks == []
    # The capture saw the chatty libraries at DEBUG, and the failures that were logged.
    names = {r.name.split(".")[0] for r in records if r.levelno == logging.DEBUG}
    assert {"httpcore", "botocore"} <= names, names
    assert any("mirror push failed" in r.getMessage() for r in records)
    assert any("peer state" in r.getMessage() for r in records)


# Redirects -----------------------------------------------------------------------------------


class Remote:
    """A loopback HTTP server standing for a peer or mirror: `reply` answers every request."""

    def __init__(self, reply: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.hits += 1
                self.rfile.read(int(self.headers.get("content-length") or 0))
                reply(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *_: object) -> None:  # keep the test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def remote() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], Remote]]:
    made: list[Remote] = []

    def make(reply: Callable[[BaseHTTPRequestHandler], None]) -> Remote:
        made.append(Remote(reply))
        return made[-1]

    yield make
    for server in made:
        server.close()


def redirect_to(target: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def reply(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", target + request.path)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return reply


def peer_error(node: RunningNode, url: str) -> str:
    return next(p["last_error"] or "" for p in listing(node, "peers") if p["url"] == url)


def test_redirects_into_another_address_kind_are_refused_unless_allowed(
    start_node: Callable[..., RunningNode], remote: Callable[..., Remote]
) -> None:
    trap = start_node("trap")
    # 0.0.0.0 reaches the loopback listener on Linux, but is not the loopback address the
    # peer's URL names: the kind of hop a redirect into a private network would be.
    into_trap = remote(redirect_to(f"http://0.0.0.0:{trap.port}"))
    to_file = remote(redirect_to("file:///etc/passwd#"))
    node = start_node("node", sync=FAST_SYNC, mirror=FAST_MIRROR)
    with node.client(node.admin_token) as http:
        for url in (into_trap.url, to_file.url):
            assert http.post("/v1/peers", json={"url": url}).status_code == 201
        mirror = {"name": "r", "kind": "node", "url": into_trap.url, "token": ADMIN_TOKEN}
        assert http.post("/v1/mirrors", json=mirror).status_code == 201
    publish(node, "admin/local")
    wait_until(lambda: peer_error(node, into_trap.url), "refusal reported on the peer")
    wait_until(lambda: listing(node, "mirrors")[0]["last_error"], "refusal reported on the mirror")
    wait_until(lambda: peer_error(node, to_file.url), "file: redirect reported")
    refused = [peer_error(node, into_trap.url), listing(node, "mirrors")[0]["last_error"]]
    for error in refused:
        assert "RedirectRefused" in error and "0.0.0.0" in error, error
        assert "MODELYARD_ALLOW_PRIVATE_REDIRECTS" in error, error
    assert "file: URL" in peer_error(node, to_file.url)
    assert into_trap.hits > 0 and trap.log.requests == []  # asked, never followed
    assert listing(node, "mirrors")[0]["state"] == "failing"

    # With the setting on, the same redirect is followed (the trap answers) ...
    publish(trap, "admin/behind-redirect")
    allowed = start_node("allowed", sync=FAST_SYNC, allow_private_redirects=True)
    with allowed.client(allowed.admin_token) as http:
        for url in (into_trap.url, to_file.url):
            assert http.post("/v1/peers", json={"url": url}).status_code == 201
    wait_until(lambda: has_repo(allowed, "admin/behind-redirect"), "replicated via redirect")
    assert trap.log.count("GET", "/v1/sync/changes") > 0
    # ... but never one that leaves http(s).
    wait_until(lambda: peer_error(allowed, to_file.url), "file: redirect reported")
    assert "file: URL" in peer_error(allowed, to_file.url)


def test_settings_refuse_peer_urls_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[[sync.peers]]\nurl = "file:///etc/passwd"\ntoken = "myd_in_file_123456"\n')
    result = CliRunner().invoke(cli, ["peer", "list", "--config", str(config)])
    assert result.exit_code == 2 and "UrlSchemeNotAllowed" in result.output, result.output
    assert "myd_in_file_123456" not in result.output


def quote_the_credential(request: BaseHTTPRequestHandler) -> None:
    """A misbehaving remote: refuses, quoting the Authorization header it was sent."""
    sent = request.headers.get("authorization", "")
    body = json.dumps({"error": f"{sent} is not valid here", "code": "Unauthorized"}).encode()
    request.send_response(401)
    request.send_header("X-Error-Code", "Unauthorized")
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


@pytest.mark.e2e
def test_the_node_log_redacts_credentials_a_remote_quotes_back(
    tmp_path: Path, remote: Callable[..., Remote]
) -> None:
    """`modelyard serve` at DEBUG: its log (through the handler the CLI installs) and its
    status show no credential, even one a peer or mirror quotes back in an error."""
    echo = remote(quote_the_credential)
    settings = node_settings(tmp_path / "proc")
    env = {
        "MODELYARD_LOG_LEVEL": "DEBUG",
        "MODELYARD_CREDENTIALS_KEY": KEY,
        "MODELYARD_MIRROR__INTERVAL": "0.05",
        "MODELYARD_MIRROR__RETRY_INITIAL": "0.1",
        "MODELYARD_SYNC__PROBE_INTERVAL": "0.2",
    }
    for name in ("database_url", "blob_store", "blob_store_endpoint"):  # the test run's backends
        if getattr(settings, name):
            env[f"MODELYARD_{name.upper()}"] = str(getattr(settings, name))
    peer_token = "myd_peer_" + secrets.token_urlsafe(24)
    mirror_token = "myd_mirror_" + secrets.token_urlsafe(24)
    node = NodeProcess(settings.data_dir, ADMIN_TOKEN, env=env)
    node.start(timeout=60)
    try:
        with node.client() as http:
            assert http.post("/v1/peers", json={"url": echo.url, "token": peer_token}).is_success
            mirror = {"name": "echo", "kind": "node", "url": echo.url, "token": mirror_token}
            assert http.post("/v1/mirrors", json=mirror).is_success
            api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
            api.create_repo("admin/quoted")

            def failures() -> list[str]:
                peers, mirrors = http.get("/v1/peers").json(), http.get("/v1/mirrors").json()
                return [peers[0]["last_error"] or "", mirrors[0]["last_error"] or ""]

            wait_until(lambda: all(failures()), "the remote's refusals recorded")
            shown = "\n".join(failures())
    finally:
        node.stop()
    log = node.log.read_text(errors="replace")
    for secret in (peer_token, mirror_token, KEY):
        assert secret not in log and secret not in shown
    assert "Bearer *** is not valid here" in shown  # redacted, not dropped
    assert "mirror push failed" in log and "Bearer *** is not valid here" in log
    assert " DEBUG httpcore" in log  # the chatty libraries were logging too
