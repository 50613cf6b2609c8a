"""openapi/openapi.json is generated from the app; this fails when it drifts."""

from __future__ import annotations

import json
from pathlib import Path

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
