"""Tiny request-scoped providers; no business logic here.

They are `async` so FastAPI calls them on the event loop instead of the threadpool: the token
lookup is cached after its first use, and the hot read routes answer cache hits on the loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from registry.domain.access import Principal
from registry.service.services import Services as Node


async def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    node: Node = request.app.state.node
    return node.auth.authenticate(token.strip() if scheme.lower() == "bearer" else None)


NodeDep = Annotated[Node, Depends(get_node)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
