"""`/status` (HTML for people, rendered by registry.api.status_page), `/v1/status` (JSON) and
`/metrics` (Prometheus)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from registry.api.deps import StatusDep
from registry.api.status_page import render

router = APIRouter(tags=["status"])


@router.get("/v1/status")
def status_json(status: StatusDep) -> dict[str, object]:
    return asdict(status.status())


@router.get("/status", response_class=HTMLResponse)
def status_page(status: StatusDep) -> HTMLResponse:
    return HTMLResponse(render(status.status()))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus exposition of the app's own registry (not the process-global default)."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
