"""The OpenAPI document: FastAPI's, completed with what holds for every route.

Routes declare the errors they answer themselves (`errors.documented`); this adds what the app
answers around them: the error body of a failed validation (422), a body that cannot be parsed
(400) or is over the limit (413) wherever a body is taken, oversized headers (431) everywhere,
too many requests (429) on the rate-limited routes,
and the path parameters of the routes that parse their raw path themselves (to keep `%2F` in a
revision).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from registry.api.errors import ERROR_SCHEMA, documented
from registry.api.ratelimit import request_class
from registry.wire import ErrorOut

_PLACEHOLDER = re.compile(r"{([^}]+)}")
_VALIDATION = "#/components/schemas/HTTPValidationError"


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) answer the completed document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return complete(generate())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Complete FastAPI's document in place (again and again: it is cached)."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _add_path_parameters(path, operation)
            _add_shared_errors(operation, limited=request_class(method.upper(), path) is not None)
    schemas = document["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    return document


def _add_path_parameters(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p["in"] == "path"}
    for name in _PLACEHOLDER.findall(path):
        if name in declared:
            continue
        description = "Percent-encoded"
        if path.endswith(f"{{{name}}}"):  # parsed from the raw path: may hold '/'
            description += "; may hold '/' (a branch `dev/x` may be sent as `dev%2Fx`)"
        schema = {"type": "string", "minLength": 1}
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": schema,
                "description": description,
            }
        )
    if not parameters:
        del operation["parameters"]


def _add_shared_errors(operation: dict[str, Any], *, limited: bool) -> None:
    responses: dict[str, Any] = operation["responses"]
    validation = responses.get("422", {}).get("content", {}).get("application/json", {})
    if validation.get("schema", {}).get("$ref") == _VALIDATION:
        validation["schema"] = ERROR_SCHEMA
    shared = [400, 413, 431] if "requestBody" in operation else [431]  # 400: unparsable body
    if limited:  # a write or an expensive read: rate limited (registry.api.ratelimit)
        shared.append(429)
    for status, response in documented(*shared).items():
        responses.setdefault(str(status), response)
