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
