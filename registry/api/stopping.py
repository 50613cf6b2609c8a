"""A request the server cancels as the node stops ends with one log line, not a traceback.

uvicorn cancels the requests still running once its graceful time is over (`modelyard serve`
gives it 1.5 s); the cancellation unwinds through the route (an upload aborts
its temp file on the way, see registry.api.ingest) and would reach uvicorn, which logs it as
"Exception in ASGI application" with a long traceback. Caught here, at the top of the request,
the stop is one WARNING line, and a client that has had no answer yet gets a 503 it may retry
elsewhere. uvicorn cancels a request task only when it shuts down, so nothing else is hidden.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response

logger = logging.getLogger(__name__)


class CancelledAtStop:
    """ASGI middleware, outermost: ends a request cancelled by the server's stop quietly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            logger.warning(
                "request cut short by the stop method=%s path=%s", scope["method"], scope["path"]
            )
            if not started:  # a client that had no answer may try again, or another node
                message = "The node is stopping; try again"
                answer = error_response(503, "NodeStopping", message, headers={"Retry-After": "1"})
                await answer(scope, receive, send)
