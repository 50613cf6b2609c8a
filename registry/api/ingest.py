"""Streaming a request body into a BlobWriter without holding it in memory.

The body is gathered into pieces (~4 MiB while the node's transfer budget lasts, see
registry.api.buffers); each piece is hashed and written on a worker thread (hashlib and blake3
release the GIL) while the event loop receives the next one, so receiving, hashing and writing
overlap. At most two pieces are in memory at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from fastapi import Request

from registry.api.buffers import transfer_buffers
from registry.domain.errors import SizeMismatchError

# The OpenAPI request body of the routes that stream raw bytes (their `openapi_extra`).
BYTES_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class BodySink(Protocol):
    """Where a body goes: a `BlobWriter`, or anything that checks pieces on their way to one."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def abort(self) -> None: ...


async def receive_body(request: Request, writer: BodySink, max_size: int | None) -> None:
    """Feed the whole body to `writer`; abort it (and re-raise) on any failure."""
    with transfer_buffers(request.app).piece(max_size) as size:
        await _receive(request, writer, max_size, size)


async def _receive(request: Request, writer: BodySink, max_size: int | None, size: int) -> None:
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    # Each piece is filled in place: a bytearray grown by `+=` from the ~64 KiB the socket
    # gives is copied again at each growth (most of the node's CPU on 8 concurrent xorbs).
    # Two pieces take turns (one filling, one being written): a fresh one each time costs the
    # kernel zeroing and faulting in its pages.
    pieces = [bytearray(size)]
    piece, filled = pieces[0], 0
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if max_size is not None and received > max_size:
                raise SizeMismatchError(f"Body is longer than the declared {max_size} bytes")
            view = memoryview(chunk)
            while view:
                n = min(len(view), size - filled)
                piece[filled : filled + n] = view[:n]
                filled += n
                view = view[n:]
                if filled == size:
                    if pending is not None:
                        await asyncio.shield(pending)  # see _settle
                    pending = loop.run_in_executor(None, writer.write, piece)
                    if len(pieces) == 1:
                        pieces.append(bytearray(size))
                    piece, filled = pieces[1] if piece is pieces[0] else pieces[0], 0
        if pending is not None:
            await asyncio.shield(pending)
        if filled:
            pending = loop.run_in_executor(None, writer.write, memoryview(piece)[:filled])
            await asyncio.shield(pending)
    except BaseException:
        if pending is not None:
            await _settle(pending)
        writer.abort()
        raise


async def _settle(pending: asyncio.Future[None]) -> None:
    """Wait for the piece being written before the writer is aborted, even when the request
    is cancelled (a stopping node cancels it, then `asyncio.run` cancels every task again as
    the process exits): aborting under a write would close its file under it, and not
    aborting would leave the temp file behind. Writes are awaited shielded, so a cancellation
    never marks one done while its thread still writes. It waits for one piece at most."""
    while not pending.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([pending])
