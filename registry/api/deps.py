"""Tiny request-scoped providers; no business logic here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from registry.node import Node
from registry.service.auth import Principal


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return get_node(request).auth.authenticate(token.strip() if scheme.lower() == "bearer"
                                               else None)


NodeDep = Annotated[Node, Depends(get_node)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
