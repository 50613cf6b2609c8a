"""Fuzzing: schemathesis sends what openapi/openapi.json allows, and what it does not, to every
operation of a real node, with no token, a wrong token, a user's token and the admin's. Every
answer must be documented (status code, content type, schema), never be a 5xx, and carry a
machine-readable code when it is an error.

The run is reproducible (a fixed seed, no example database) and bounded per operation. The
node's repos, files, peer and mirror are given to the generator as dictionaries, so requests
reach real data and not only 404s; the fuzzer may change that data, and deletes run last so
every other operation meets it first. Nothing leaves loopback: the node's mirror pusher is off,
and the URL of any peer or mirror the fuzzer adds is pointed at a closed local port first.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import blake3
import pytest
import schemathesis
from huggingface_hub import HfApi
from schemathesis.engine import events, from_schema
from schemathesis.engine.recorder import ScenarioRecorder

from registry.metadata.db import Database
from registry.service.auth import AuthService
from tests.conftest import TEST_BLOB_STORE, TEST_DATABASE, RunningNode

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",  # 405 with an Allow header
)
# Examples per operation in the fuzzing phase. The examples and coverage phases add theirs (the
# schema's examples, and each parameter's boundaries and wrong types), and take most of a run's
# time: a run with 5 here takes ~70 % as long as one with 20 (generating cases costs about
# twice what the node spends answering them).
EXAMPLES = {"anonymous": 8, "wrong-token": 3, "user": 10, "admin": 10}
# The coverage phase (each parameter's boundaries and wrong types) but with a wrong token: a
# wrong token is refused before any parameter is read, except on the public routes, where it
# is the anonymous run's, so its boundaries would repeat the same 401s (half its run's time).
COVERED = {"anonymous", "user", "admin"}
# The metadata and blob backends change what a route answers (a 302 to the bucket), not who may
# call it: on Postgres + S3 (CI's second pass) fuzz as the admin only, who reaches every route.
WHO = list(EXAMPLES) if (TEST_DATABASE, TEST_BLOB_STORE) == ("sqlite", "local") else ["admin"]
HELLO = b"hello fuzzer\n"
WEIGHTS = bytes(range(256)) * 64  # stored through Git LFS (`*.bin`)
CARD = b"---\nkind: lora\ntags: [fuzz]\nbase_model: SDXL 1.0\n---\nFuzzed.\n"


# How schemathesis sends the commit body, which the document gives as an array of lines.
@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@dataclass
class Outcome:
    """What one run sent and got back, by operation, and everything that went wrong."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(sum(seen.values()) for seen in self.statuses.values())

    def succeeded(self) -> set[str]:
        """Operations answered at least once with 2xx, or a redirect to the bytes in S3."""
        return {op for op, seen in self.statuses.items() if any(s < 400 for s in seen)}

    def record(self, recorder: ScenarioRecorder) -> None:
        seen = self.statuses.setdefault(recorder.label, Counter())
        for interaction in recorder.interactions.values():
            response = interaction.response
            if response is None:
                continue
            seen[response.status_code] += 1
            if 400 <= response.status_code < 500 and not _machine_readable(
                interaction.request.method, response
            ):
                self.problems.append(
                    f"{recorder.label}: {response.status_code} without a machine-readable code: "
                    f"{interaction.request.method} {interaction.request.uri}"
                )
        for checks in recorder.checks.values():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    self.problems.append(
                        f"{recorder.label}: {failure.title}\n{failure.message}\n"
                        f"{check.failure_info.code_sample}"
                    )


def _machine_readable(method: str, response: Any) -> bool:
    code = response.headers.get("x-error-code", [""])[0]
    if not code or method.upper() == "HEAD":
        return bool(code)
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return (
        isinstance(body, dict) and body.get("code") == code and isinstance(body.get("error"), str)
    )


def run_fuzzer(schema: schemathesis.BaseSchema) -> Outcome:
    """Everything but deletes first, so every other operation meets the data intact; revoking
    tokens last, since it may revoke the very token the fuzzer sends."""
    outcome = Outcome()
    revoke = "/v1/tokens/{token_id}"
    for part in (
        schema.exclude(method="DELETE"),
        schema.include(method="DELETE").exclude(method="DELETE", path=revoke),
        schema.include(method="DELETE", path=revoke),
    ):
        run_part(part, outcome)
    return outcome


def run_part(schema: schemathesis.BaseSchema, outcome: Outcome) -> None:
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            outcome.record(event.recorder)
        elif isinstance(event, events.NonFatalError):
            outcome.problems.append(f"{event.label}: {event.info.title}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            outcome.problems.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason


@pytest.fixture
def nowhere() -> Iterator[str]:
    """A loopback URL nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def call_rules(nowhere: str) -> Iterator[None]:
    """Applied to each case before it is sent: a peer's or mirror's URL points at `nowhere`, so
    the node never contacts a host the fuzzer made up (nor another service on this machine), and
    a long-poll of the change feed waits 0.1 s, not up to its documented 120 s."""

    def before_call(_ctx: schemathesis.HookContext, case: schemathesis.Case[Any], _kw: Any) -> None:
        if case.operation.label in ("POST /v1/peers", "POST /v1/mirrors"):
            if isinstance(case.body, dict):
                _keep_on_loopback(case.body, nowhere)
        if case.operation.label == "GET /v1/sync/changes" and isinstance(case.query, dict):
            wait = case.query.get("wait")
            if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0.1:
                case.query["wait"] = 0.1

    schemathesis.hook(before_call)
    yield
    schemathesis.hooks.unregister(before_call)


def _keep_on_loopback(body: dict[str, Any], nowhere: str) -> None:
    url = body.get("url")
    if url is None and body.get("kind") == "hf":  # would mean the public Hub
        body["url"] = nowhere
    if not isinstance(url, str):
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # the node must refuse it cleanly: sent as generated
        return
    if host is not None and parts.scheme != "s3":  # an S3 mirror is never pushed to here
        body["url"] = parts._replace(scheme="http", netloc=urlsplit(nowhere).netloc).geturl()


def seed(node: RunningNode, nowhere: str) -> tuple[str, dict[str, list[str]]]:
    """Repos with files, a tag and a branch, a peer and a mirror; returns a user's
    write token and the values path parameters are drawn from (keyed by their names)."""
    db = Database(node.settings.effective_database_url)
    try:
        token = AuthService(db).create_token("fuzz", write=True)
        AuthService(db).create_token("fuzz", write=False, label="spare")  # one to revoke
    finally:
        db.dispose()
    api = HfApi(endpoint=node.url, token=token)
    for kind in ("model", "dataset"):
        api.create_repo("fuzz/data", repo_type=kind)
        for path, data in (("README.md", CARD), ("sub/hello.txt", HELLO), ("w.bin", WEIGHTS)):
            api.upload_file(
                path_or_fileobj=data, path_in_repo=path, repo_id="fuzz/data", repo_type=kind
            )
        api.create_tag("fuzz/data", tag="v1", repo_type=kind)
        api.create_branch("fuzz/data", branch="dev", repo_type=kind)
    commit = api.model_info("fuzz/data").sha
    with node.client(node.admin_token) as http:
        peer = http.post("/v1/peers", json={"url": nowhere, "blobs": "lazy"})
        mirror = http.post("/v1/mirrors", json={"name": "data", "kind": "s3", "url": "s3://m/x"})
        spare = [t["id"] for t in http.get("/v1/tokens").json() if t["label"] == "spare"]
    assert peer.status_code == mirror.status_code == 201, (peer.text, mirror.text)
    b3, sha256 = blake3.blake3(HELLO).hexdigest(), hashlib.sha256(WEIGHTS).hexdigest()
    return (
        token,
        {
            "repo_type": ["models", "datasets"],  # of /api/...; /v1/repos/... takes "model"
            "namespace": ["fuzz"],
            "name": ["data"],  # also the mirror's name
            "name_git": ["data.git", "data"],
            "revision": ["main", "v1", "dev", str(commit)],
            "rest": ["main", "main/sub", "v1/sub/hello.txt"],  # of a tree: revision[/folder]
            "path": ["sub/hello.txt", "w.bin", "README.md"],
            "branch": ["dev", "main", "b1", "b2", "b3", "b4", "b5"],
            "tag": ["v1", "v2"],
            "blake3": [b3, f"blake3:{b3}"],
            "oid": [sha256],
            "file_hash": [b3, sha256, sha256[:10]],
            "peer_id": [peer.json()["id"]],
            "token_id": [str(i) for i in spare],
        },
    )


def fuzz_schema(node: RunningNode, who: str, nowhere: str) -> schemathesis.BaseSchema:
    token, values = seed(node, nowhere)
    dictionaries: dict[str, Any] = {name: {"values": v} for name, v in values.items()}
    dictionaries["range"] = {"values": ["bytes=0-3", "bytes=-2", "bytes=9999-", "bytes=0-1,3-4"]}
    parameters = {f"path.{name}": {"dictionary": name, "probability": 0.9} for name in values}
    parameters["header.Range"] = {"dictionary": "range", "probability": 0.5}
    dictionaries["v1_repo_type"] = {"values": ["model", "dataset"]}
    native = {"path.repo_type": {"dictionary": "v1_repo_type", "probability": 0.9}}
    bearer = {"wrong-token": "myd_not_a_token", "user": token, "admin": node.admin_token}
    config = schemathesis.Config.from_dict(
        {
            "seed": 20260101,
            "base-url": node.url,
            "headers": {"Authorization": f"Bearer {bearer[who]}"} if who in bearer else {},
            "workers": 1,
            "request-timeout": 60,
            "suppress-health-check": ["all"],  # about generation speed, slow on a busy machine
            "generation": {
                "max-examples": EXAMPLES[who],
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": who in COVERED}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "dictionaries": dictionaries,
            "parameters": parameters,
            "operations": [{"include-path-regex": "^/v1/repos/", "parameters": native}],
        }
    )
    return schemathesis.openapi.from_path(DOCUMENT, config=config)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("who", WHO)
# Hypothesis's notes on how schemathesis drives it (large reprs, `random` inside strategies).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.usefixtures("call_rules")
def test_fuzzing_finds_no_server_error_nor_undocumented_answer(
    start_node: Callable[..., RunningNode],
    nowhere: str,
    monkeypatch: pytest.MonkeyPatch,
    who: str,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", nowhere)  # S3 mirrors (the blob store has its own)
    # Changes wait in the outbox. The user "fuzz" is not rate limited: its thousands of calls
    # must reach every write route (429s are the rate-limit tests' concern).
    node = start_node("fuzz", mirror={"enabled": False}, limits={"exempt_users": ["fuzz"]})
    outcome = run_fuzzer(fuzz_schema(node, who, nowhere))
    assert not outcome.problems, "\n\n".join(outcome.problems[:40])
    assert_reached(who, outcome)


def assert_reached(who: str, outcome: Outcome) -> None:
    """A run cannot pass by reaching nothing: every operation was called, many times, and real
    data was found behind the token."""
    operations = sum(len(methods) for methods in json.loads(DOCUMENT.read_text())["paths"].values())
    called = {op for op, seen in outcome.statuses.items() if seen}
    assert len(called) == operations, sorted(called)
    assert outcome.calls >= (20 if who in COVERED else 5) * operations, outcome.calls
    reads = {
        "GET /api/{repo_type}/{namespace}/{name}",
        "GET /api/{repo_type}/{namespace}/{name}/tree/{rest}",
        "GET /{namespace}/{name}/resolve/{revision}/{path}",
        "GET /v1/blobs/{blake3}",
        "GET /v1/files/by-hash/{file_hash}",
        "GET /v1/repos/{repo_type}/{namespace}/{name}/manifest/{revision}",
    }
    writes = {
        "POST /api/{repo_type}/{namespace}/{name}/commit/{revision}",
        "PUT /v1/repos/{repo_type}/{namespace}/{name}/metadata",
        "POST /api/{repo_type}/{namespace}/{name}/branch/{branch}",
    }
    admin = {"GET /v1/peers", "GET /v1/mirrors/{name}", "POST /v1/mirrors"}
    expected = {"anonymous": reads, "wrong-token": set(), "user": reads | writes}.get(
        who, reads | writes | admin
    )
    missing = expected - outcome.succeeded()
    assert not missing, f"never succeeded as {who}: {sorted(missing)}"
    if who == "wrong-token":
        assert outcome.succeeded() <= PUBLIC, sorted(outcome.succeeded() - PUBLIC)


# What answers without reading the token at all.
PUBLIC = {
    "GET /v1/health",
    "GET /v1/health/live",
    "GET /v1/health/ready",
    "GET /status",
    "GET /v1/status",
    "GET /v1/search/status",
    "POST /api/validate-yaml",
    "PUT /lfs/objects/{oid}",
    "POST /lfs/verify/{oid}",
}


# Focused checks of answers the fuzzer once found breaking their documented schema.


def documented(path: str, method: str) -> schemathesis.APIOperation[Any, Any, Any, Any]:
    return schemathesis.openapi.from_path(DOCUMENT)[path][method]


def test_repo_info_without_optional_card_keys_matches_its_schema(node: RunningNode) -> None:
    """`modelyard` left out its empty keys (no license here) that the schema required."""
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/plain")
    api.upload_file(
        path_or_fileobj=b"---\nkind: lora\n---\n", path_in_repo="README.md", repo_id="admin/plain"
    )
    with node.client() as http:
        info = http.get("/api/models/admin/plain")
        at = http.get("/api/models/admin/plain/revision/main")
    assert info.json()["modelyard"]["kind"] == "lora" and "license" not in info.json()["modelyard"]
    documented("/api/{repo_type}/{namespace}/{name}", "GET").validate_response(info)
    documented("/api/{repo_type}/{namespace}/{name}/revision/{revision}", "GET").validate_response(
        at
    )


def test_error_answers_match_the_documented_error_body(node: RunningNode) -> None:
    with node.client(node.admin_token) as http:
        invalid = http.post("/api/repos/create", json={"name": 5})
        missing = http.get("/api/models/admin/nothing")
    assert (invalid.status_code, missing.status_code) == (422, 404)
    documented("/api/repos/create", "POST").validate_response(invalid)
    documented("/api/{repo_type}/{namespace}/{name}", "GET").validate_response(missing)
