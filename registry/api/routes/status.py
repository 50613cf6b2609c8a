"""`/status` (HTML for people, a page like the others: templates/status.html), `/v1/status`
(JSON) and `/metrics` (Prometheus)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from registry.api.deps import StatusDep
from registry.api.routes.pages import render_page
from registry.api.session import ViewerDep
from registry.api.status_page import template_context

router = APIRouter(tags=["status"])


@router.get("/v1/status")
def status_json(status: StatusDep) -> dict[str, object]:
    return asdict(status.status())


@router.get("/status", response_class=HTMLResponse)
def status_page(request: Request, status: StatusDep, viewer: ViewerDep) -> HTMLResponse:
    # The same facts for everyone: the viewer only shows in the shared header.
    return render_page(request, viewer, "status.html", **template_context(status.status()))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus exposition of the app's own registry (not the process-global default)."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
