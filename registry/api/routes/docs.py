"""`/docs` (Swagger UI) and `/redoc`, over the app's own /openapi.json.

FastAPI's built-in pages load their scripts and styles from a CDN and stay blank on a node with
no internet; these load the same files from the node itself: the fastapi-offline package ships
them (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc 2), and `create_app` mounts them at
ASSETS_URL.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/static/docs"
# Every fetch the pages make stays on the node, whatever the bundled scripts would load: ReDoc's
# sidebar shows its maker's logo from a CDN (and hides it when blocked). Allowed beyond the node's
# own files: inline scripts and styles (FastAPI's pages start the UIs inline, and both style
# themselves inline), `data:` icons, and the `blob:` worker of ReDoc's search.
ONLY_THIS_NODE = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:"
)
router = APIRouter(include_in_schema=False)


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the assets' URL prefix, behind any proxy prefix."""
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_URL}"


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
    )
    page.headers["Content-Security-Policy"] = ONLY_THIS_NODE
    return page


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    page = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} API",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,  # fonts from Google would be a request off the node
    )
    page.headers["Content-Security-Policy"] = ONLY_THIS_NODE
    return page
