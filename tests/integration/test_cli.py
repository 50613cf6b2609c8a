"""The `modelyard` console commands (on a data dir; one asks a running node)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from registry.cli import cli
from registry.domain.access import CONSOLE
from registry.domain.names import RepoId, RepoType
from registry.domain.tokens import hash_token
from registry.metadata.db import Database
from registry.runtime import Runtime
from registry.service.auth import AuthService
from registry.settings import load_settings
from tests.conftest import ADMIN_TOKEN, RunningNode


def test_token_create_prints_a_token_stored_only_as_hash(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["token", "create", "--user", "bob", "--write", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("myd_") and len(token) > 30
    db = Database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    try:
        principal = AuthService(db).authenticate(token)
        assert (principal.user, principal.can_write, principal.is_admin) == ("bob", True, False)
        assert token.encode() not in (tmp_path / "modelyard.db").read_bytes()
        assert hash_token(token).encode() in (tmp_path / "modelyard.db").read_bytes()
    finally:
        db.dispose()


def test_token_create_read_only_by_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["token", "create", "--user", "carol", "--data-dir", str(tmp_path)]
    )
    db = Database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    try:
        assert not AuthService(db).authenticate(result.stdout.strip()).can_write
    finally:
        db.dispose()


def test_token_create_rejects_invalid_user_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["token", "create", "--user", "../evil", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "InvalidName" in result.output


def test_openapi_command_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    result = CliRunner().invoke(cli, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    paths = json.loads(out.read_text())["paths"]
    assert "/v1/health" in paths and "/api/repos/create" in paths


def test_peer_add_list_remove_masks_the_token(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    added = runner.invoke(
        cli,
        [
            "peer",
            "add",
            "http://127.0.0.1:9/",
            "--token",
            "myd_secret_peer_token",
            "--blobs",
            "lazy",
            *base,
        ],
    )
    assert added.exit_code == 0, added.output
    peer_id = added.stdout.split("\t")[0]
    listed = runner.invoke(cli, ["peer", "list", *base]).stdout
    assert peer_id in listed and "lazy" in listed and "myd_secret_peer_token" not in listed
    duplicate = runner.invoke(cli, ["peer", "add", "http://127.0.0.1:9", *base])
    assert duplicate.exit_code == 4 and "already configured" in duplicate.output
    assert runner.invoke(cli, ["peer", "remove", peer_id, *base]).exit_code == 0
    assert runner.invoke(cli, ["peer", "list", *base]).stdout == ""


def test_peer_add_rejects_bad_urls_and_unknown_ids(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["peer", "add", "file:///etc/passwd", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "http(s)" in bad.output
    gone = runner.invoke(cli, ["peer", "remove", "p-nope", "--data-dir", str(tmp_path)])
    assert gone.exit_code == 3 and "PeerNotFound" in gone.output


def test_peer_add_names_the_peers_repos_whose_ids_are_held_here(
    tmp_path: Path, node: RunningNode
) -> None:
    with node.client(ADMIN_TOKEN) as http:
        for name in ("same", "theirs"):
            assert http.post("/api/repos/create", json={"name": name}).status_code == 200
    here = tmp_path / "here"
    runtime = Runtime.open(load_settings(None, data_dir=here))  # as the command opens it
    try:
        runtime.repos.create(CONSOLE, RepoId(RepoType.MODEL, "admin", "same"), private=False)
    finally:
        runtime.close()
    added = CliRunner().invoke(
        cli, ["peer", "add", node.url, "--token", ADMIN_TOKEN, "--data-dir", str(here)]
    )
    assert added.exit_code == 0, added.output
    assert "warning: 1 repos of" in added.stderr and "model/admin/same" in added.stderr
    assert "theirs" not in added.stderr


def test_recover_refuses_a_missing_token_and_says_when_a_peer_keeps_nothing(
    tmp_path: Path, node: RunningNode
) -> None:
    runner = CliRunner()
    base = ["recover", "--data-dir", str(tmp_path / "here")]
    unset = runner.invoke(cli, [*base, "--from", node.url, "--token-env", "NOT_SET_ANYWHERE"])
    assert unset.exit_code == 2 and "NOT_SET_ANYWHERE" in unset.output
    nothing = runner.invoke(cli, [*base, "--from", node.url])
    assert nothing.exit_code == 0, nothing.output
    assert "keeps nothing of this node's lost history" in nothing.stdout
    down = runner.invoke(cli, [*base, "--from", "http://127.0.0.1:9"])
    assert down.exit_code == 6 and "error: " in down.stderr, down.output
    refused = runner.invoke(cli, [*base, "--from", "file:///etc/passwd"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
