"""The `modelyard` console commands that need no running node."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from registry.cli import cli
from registry.domain.tokens import hash_token
from registry.metadata.db import Database
from registry.service.auth import AuthService


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
