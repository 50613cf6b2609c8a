"""The bare ASGI floor of an upload: an app that receives a request body under uvicorn (the
node's server, same protocol implementation) and throws it away, answering 201. No routing,
hashing or writing: what receiving the bytes alone costs (`bench/ingest.py` runs it)."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 201 if scope["method"] == "PUT" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
