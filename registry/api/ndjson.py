"""The Hub's commit payload (`POST .../commit/{revision}`): NDJSON, one JSON object per line,
a header and then file operations; its OpenAPI schema and its parser."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from registry.domain.digest import is_sha256
from registry.domain.errors import InvalidError
from registry.domain.names import check_repo_path
from registry.service.commits import AddBytes, AddLfs, Delete, Operation

_PATH = {"type": "string", "minLength": 1}


def _line(key: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["key", "value"],
        "properties": {"key": key, "value": {"type": "object", **value}},
    }


NDJSON = {
    "schema": {
        "type": "array",
        "description": "One JSON object per line: a header and the file operations",
        "minItems": 1,
        "items": {
            "oneOf": [
                _line(
                    {"const": "header"},
                    {
                        "required": ["summary"],
                        "properties": {
                            "summary": {"type": "string", "minLength": 1},
                            "description": {"type": "string"},
                            "parentCommit": {"type": "string"},
                        },
                    },
                ),
                _line(
                    {"const": "file"},
                    {
                        "required": ["path", "content"],
                        "properties": {
                            "path": _PATH,
                            "content": {"type": "string", "pattern": "^([A-Za-z0-9+/]{4})*$"},
                            "encoding": {"const": "base64"},
                        },
                    },
                ),
                _line(
                    {"const": "lfsFile"},
                    {
                        "required": ["path", "oid"],
                        "properties": {
                            "path": _PATH,
                            "algo": {"const": "sha256"},
                            "oid": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "size": {"type": "integer", "minimum": 0},
                        },
                    },
                ),
                _line(
                    {"enum": ["deletedFile", "deletedFolder"]},
                    {"required": ["path"], "properties": {"path": _PATH}},
                ),
            ]
        },
    }
}


def parse_ndjson(body: bytes) -> tuple[dict[str, object], list[Operation]]:
    """Parse a Hub commit payload: one header line, then file operations."""
    header: dict[str, object] | None = None
    operations: list[Operation] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            assert isinstance(value, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise InvalidError(
                f'Malformed NDJSON at line {number}: expected {{"key": ..., "value": {{...}}}}'
            ) from None
        if key == "header":
            header = value
        else:
            operations.append(_operation(key, value, number))
    if header is None:
        raise InvalidError("The commit payload has no header line")
    summary = header.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidError("The commit message (summary) must be a non-empty string")
    return header, operations


def _operation(key: str, value: dict[str, object], number: int) -> Operation:
    path = value.get("path")
    if not isinstance(path, str):
        raise InvalidError(f"Line {number}: 'path' must be a string")
    if key in ("deletedFile", "deletedFolder"):
        check_repo_path(path.rstrip("/"))
        return Delete(path, folder=key == "deletedFolder" or path.endswith("/"))
    check_repo_path(path)
    if key == "file":
        try:
            data = base64.b64decode(str(value.get("content", "")), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidError(f"Line {number}: content of {path!r} is not base64") from None
        return AddBytes(path, data)
    if key == "lfsFile":
        oid, size = value.get("oid"), value.get("size")
        if (
            not isinstance(oid, str)
            or not is_sha256(oid)
            or not (size is None or (isinstance(size, int) and size >= 0))
        ):
            raise InvalidError(f"Line {number}: lfsFile needs a sha256 oid and a size")
        return AddLfs(path, oid, size)
    raise InvalidError(f"Line {number}: unknown operation {key!r}")
