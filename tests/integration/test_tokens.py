"""Access tokens: created with an expiry, listed without secrets, revoked; a revoked or expired
token is told apart from an unknown one. Over `/v1/tokens` and `modelyard token`, against a
running node."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from registry.cli import cli
from registry.domain.clock import now_ms
from registry.domain.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, RunningNode

DAY_MS = 86_400_000


def run_cli(node: RunningNode, *args: str) -> Result:
    """A `modelyard` command on the running node's data (and database, when not SQLite)."""
    env = {"MODELYARD_DATABASE_URL": node.settings.database_url or None}
    return CliRunner().invoke(cli, [*args, "--data-dir", str(node.settings.data_dir)], env=env)


def wait_until(check: Callable[[], object], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.05)


def whoami(node: RunningNode, token: str) -> httpx.Response:
    with node.client(token) as http:
        return http.get("/api/whoami-v2")


def code_of(answer: httpx.Response) -> str:
    return str(answer.headers.get("x-registry-error", ""))


def listed(node: RunningNode, token: str, **params: str) -> list[dict[str, object]]:
    with node.client(token) as http:
        answer = http.get("/v1/tokens", params=params)
    assert answer.status_code == 200, answer.text
    tokens: list[dict[str, object]] = answer.json()
    return tokens


def id_of(node: RunningNode, user: str, label: str) -> int:
    found = [t for t in listed(node, ADMIN_TOKEN, user=user) if t["label"] == label]
    assert len(found) == 1, found
    return int(str(found[0]["id"]))


def test_token_create_with_expiry_is_listed_without_secrets(node: RunningNode) -> None:
    created = run_cli(
        node, "token", "create", "--user", "bob", "--write", "--label", "ci", "--expires", "30d"
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert whoami(node, token).status_code == 200

    with node.client(token) as http:
        answer = http.get("/v1/tokens")
    [mine] = answer.json()
    assert (mine["label"], mine["user"], mine["rights"], mine["expired"]) == (
        "ci",
        "bob",
        "write",
        False,
    )
    expires = mine["expires"]
    assert isinstance(expires, str) and expires[:10] == time.strftime(
        "%Y-%m-%d", time.gmtime(time.time() + 30 * 86400)
    )
    assert mine["created"] and "last_used" in mine
    printed = run_cli(node, "token", "list")
    assert printed.exit_code == 0, printed.output
    header, *rows = printed.stdout.splitlines()
    assert header.split("\t") == [
        "id",
        "label",
        "user",
        "rights",
        "created",
        "expires",
        "last_used",
    ]
    bob = [row.split("\t") for row in rows if row.split("\t")[2] == "bob"]
    assert [(r[0], r[1], r[3]) for r in bob] == [(str(mine["id"]), "ci", "write")]
    admin = [row.split("\t") for row in rows if row.split("\t")[2] == "admin"]
    assert admin and all(r[3] == "admin" and r[5] == "never" for r in admin)
    for text in (answer.text, printed.output, str(listed(node, ADMIN_TOKEN))):
        for secret in (token, hash_token(token), ADMIN_TOKEN, hash_token(ADMIN_TOKEN)):
            assert secret not in text


def test_token_revoked_over_http_is_refused_at_once_with_its_code(
    node: RunningNode, make_token: Callable[..., str]
) -> None:
    token = make_token("bob", write=False)
    assert whoami(node, token).status_code == 200  # now cached by the node
    [mine] = listed(node, token)
    assert mine["rights"] == "read"

    with node.client(token) as http:  # a token may revoke itself
        assert http.delete(f"/v1/tokens/{mine['id']}").status_code == 204
    with node.client(token) as http:
        listing = http.get("/v1/tokens")
    for answer in (whoami(node, token), listing):
        assert answer.status_code == 401 and code_of(answer) == "TokenRevoked", answer.text
        assert answer.json()["code"] == "TokenRevoked"
    assert all(t["id"] != mine["id"] for t in listed(node, ADMIN_TOKEN))
    unknown = whoami(node, "myd_never_issued")
    assert unknown.status_code == 401 and code_of(unknown) == "Unauthorized"


def test_token_revoked_by_the_cli_stops_working_on_the_running_node(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("node", token_recheck_interval=0.2)
    token = node.runtime.auth.create_token("bob", write=True, label="laptop")
    assert whoami(node, token).status_code == 200
    token_id = id_of(node, "bob", "laptop")

    revoked = run_cli(node, "token", "revoke", str(token_id))
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.startswith(f"revoked {token_id}")
    wait_until(lambda: code_of(whoami(node, token)) == "TokenRevoked", "the revocation seen")
    again = run_cli(node, "token", "revoke", str(token_id))  # revoking twice changes nothing
    assert again.exit_code == 0, again.output


def test_token_expired_is_refused_with_its_code(node: RunningNode) -> None:
    auth = node.runtime.auth
    past = auth.create_token("bob", write=False, expires_ms=now_ms() - 1000)
    answer = whoami(node, past)
    assert answer.status_code == 401 and code_of(answer) == "TokenExpired", answer.text

    soon = auth.create_token("carol", write=False, label="soon", expires_ms=now_ms() + 3000)
    assert whoami(node, soon).status_code == 200  # cached: the expiry is checked on each use
    wait_until(lambda: code_of(whoami(node, soon)) == "TokenExpired", "the expiry")
    [listing] = listed(node, ADMIN_TOKEN, user="carol")
    assert listing["expired"] is True
    assert "(expired)" in run_cli(node, "token", "list", "--user", "carol").stdout


def test_tokens_owner_sees_and_revokes_only_their_own_the_admin_everyones(
    node: RunningNode, make_token: Callable[..., str]
) -> None:
    bob = make_token("bob")
    bob_spare = make_token("bob", write=False)
    carol = make_token("carol")
    carol_id = id_of(node, "carol", "")

    assert {t["user"] for t in listed(node, bob)} == {"bob"}
    assert len(listed(node, bob)) == 2
    assert {"admin", "bob", "carol"} <= {t["user"] for t in listed(node, ADMIN_TOKEN)}
    assert {t["user"] for t in listed(node, ADMIN_TOKEN, user="bob")} == {"bob"}
    with node.client(bob) as http:
        other = http.get("/v1/tokens", params={"user": "carol"})
        assert other.status_code == 403 and code_of(other) == "Forbidden"
        refused = http.delete(f"/v1/tokens/{carol_id}")
        assert refused.status_code == 404 and code_of(refused) == "TokenNotFound"
    assert whoami(node, carol).status_code == 200
    with node.client() as anonymous:
        assert code_of(anonymous.get("/v1/tokens")) == "Unauthorized"
        assert anonymous.delete(f"/v1/tokens/{carol_id}").status_code == 401

    spare_id = [t["id"] for t in listed(node, bob) if t["rights"] == "read"][0]
    with node.client(bob) as http:
        assert http.delete(f"/v1/tokens/{spare_id}").status_code == 204
    with node.client(ADMIN_TOKEN) as http:
        assert http.delete(f"/v1/tokens/{carol_id}").status_code == 204
    assert code_of(whoami(node, bob_spare)) == "TokenRevoked"
    assert code_of(whoami(node, carol)) == "TokenRevoked"
    assert whoami(node, bob).status_code == 200
    assert len(listed(node, bob)) == 1


def test_tokens_unknown_id_is_404(node: RunningNode) -> None:
    with node.client(ADMIN_TOKEN) as http:
        missing = http.delete("/v1/tokens/999999")
        assert missing.status_code == 404 and code_of(missing) == "TokenNotFound"
        assert http.delete("/v1/tokens/abc").status_code == 422
    result = run_cli(node, "token", "revoke", "999999")
    assert result.exit_code == 3 and "TokenNotFound" in result.output


@pytest.mark.parametrize("expires", ["30x", "0d", "-5m", "d", "1.5h", "soon"])
def test_token_create_rejects_a_malformed_expiry(tmp_path: Path, expires: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["token", "create", "--user", "bob", "--expires", expires, "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 2, result.output
    assert "--expires" in result.output and "Invalid duration" in result.output
    assert not (tmp_path / "modelyard.db").exists()  # refused before the node was opened


@pytest.mark.parametrize(("expires", "seconds"), [("90m", 5400), ("12h", 43200), ("30d", 2592000)])
def test_token_create_accepts_minutes_hours_and_days(
    tmp_path: Path, expires: str, seconds: int
) -> None:
    before = now_ms()
    result = CliRunner().invoke(
        cli,
        ["token", "create", "--user", "bob", "--expires", expires, "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    listing = CliRunner().invoke(cli, ["token", "list", "--data-dir", str(tmp_path)])
    [row] = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    expires_at = calendar.timegm(time.strptime(row[5][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(expires_at * 1000 - before - seconds * 1000) < 60_000


def test_token_last_use_is_written_in_batches(start_node: Callable[..., RunningNode]) -> None:
    node = start_node("node", token_recheck_interval=0.2)
    token = node.runtime.auth.create_token("bob", write=False, label="used")
    node.runtime.auth.create_token("bob", write=False, label="idle")
    for _ in range(5):
        assert whoami(node, token).status_code == 200

    def last_use(label: str) -> object:
        return next(t for t in listed(node, ADMIN_TOKEN, user="bob") if t["label"] == label)[
            "last_used"
        ]

    wait_until(lambda: last_use("used") is not None, "the last use written")
    assert last_use("idle") is None
    assert run_cli(node, "token", "list", "--user", "bob").stdout.count("\tnever") >= 1
