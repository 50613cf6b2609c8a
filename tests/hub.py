"""Writing to a node over the Hub's own wire format (NDJSON commits), fast enough for fixtures
of hundreds of repos; the huggingface_hub client is exercised by the client tests."""

from __future__ import annotations

import base64
import json

import httpx

NDJSON = {"content-type": "application/x-ndjson"}


def ndjson(*lines: object) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def header(summary: object = "change") -> dict[str, object]:
    return {"key": "header", "value": {"summary": summary}}


def add(path: str, data: bytes = b"x") -> dict[str, object]:
    return {
        "key": "file",
        "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()},
    }


def create_with_files(
    http: httpx.Client, repo: str, files: dict[str, bytes], *, private: bool = False
) -> str:
    """Create `repo` (namespace/name) and commit `files` to main; returns the commit id."""
    namespace, name = repo.split("/")
    created = http.post(
        "/api/repos/create",
        json={"name": name, "organization": namespace, "private": private},
    )
    assert created.status_code == 200, created.text
    body = ndjson(header("add files"), *(add(p, d) for p, d in files.items()))
    committed = http.post(f"/api/models/{repo}/commit/main", content=body, headers=NDJSON)
    assert committed.status_code == 200, committed.text
    return str(committed.json()["commitOid"])
