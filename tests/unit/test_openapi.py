"""openapi/openapi.json is generated from the app; this fails when it drifts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from registry.api.app import create_app
from registry.settings import Settings

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_openapi_document_matches_app() -> None:
    current = create_app(Settings()).openapi()
    assert json.loads(DOCUMENT.read_text()) == current, (
        "openapi/openapi.json is stale: run `modelyard openapi`"
    )


def test_openapi_operation_ids_unique() -> None:
    ids = [
        op["operationId"]
        for path in create_app(Settings()).openapi()["paths"].values()
        for op in path.values()
    ]
    assert len(ids) == len(set(ids))


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    paths = json.loads(DOCUMENT.read_text())["paths"]
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()]


def test_openapi_declares_every_path_parameter() -> None:
    for path, method, op in operations():
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), (method, path)


def test_openapi_documents_every_error_as_error_out() -> None:
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, method, op in operations():
        for status, response in op["responses"].items():
            if status.startswith("4"):
                assert response["content"]["application/json"]["schema"] == error, (method, path)
        assert "431" in op["responses"], (method, path)
