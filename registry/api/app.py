"""create_app(): the FastAPI application of one node, over the services the runtime built."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from registry import __version__
from registry.api import errors, openapi
from registry.api.buffers import TransferBuffers
from registry.api.canonical import CanonicalRepoPaths, repo_actions
from registry.api.fastpath import ReadFastPath
from registry.api.limits import BodyLimit
from registry.api.ratelimit import RateLimit
from registry.api.routes import (
    discovery,
    docs,
    hf_discussions,
    hf_history,
    hf_repos,
    hf_resolve,
    hf_settings,
    hf_tree,
    hf_upload,
    images,
    mirrors,
    native,
    orgs,
    page_forms,
    pages,
    peers,
    raw,
    snapshot,
    status,
    sync,
    tokens,
    workflows,
    xet,
)
from registry.api.stopping import CancelledAtStop
from registry.metrics import HttpMetrics, Metrics, NodeCollector
from registry.service.services import Services
from registry.settings import Settings

Jobs = Callable[[], AbstractContextManager[None]]


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(
    settings: Settings, services: Services | None = None, *, jobs: Jobs | None = None
) -> FastAPI:
    """The HTTP app over a node's services (built by `registry.runtime`); while it serves, it
    runs `jobs` (the runtime's background jobs) and starts none of its own. Without services
    it only describes itself (`modelyard openapi`)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if services is None:
            yield
            return
        services.feed.bind(asyncio.get_running_loop())
        collector = NodeCollector(services.status.sample, services.status.health_sample)
        metrics.registry.register(collector)
        try:
            with jobs() if jobs is not None else nullcontext():
                yield
        finally:
            metrics.registry.unregister(collector)

    metrics = Metrics(CollectorRegistry())  # injected: no default-registry globals
    app = FastAPI(
        title="modelyard",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # FastAPI's /docs and /redoc load from a CDN: docs.router serves both
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.services = services
    app.state.buffers = TransferBuffers(settings.limits.transfer_buffer_bytes)
    openapi.install(app)
    errors.install(app)
    # The docs' assets first: the /static mount would take their URLs too, and answer 404.
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")  # pages' assets
    routes: list[BaseRoute] = []
    for module in (
        native,
        images,
        workflows,
        discovery,
        sync,
        snapshot,
        peers,
        mirrors,
        tokens,
        orgs,
        status,
        docs,
        xet,
        hf_settings,
        hf_repos,
        hf_tree,
        hf_history,
        hf_upload,
        hf_discussions,
        hf_resolve,
        page_forms,
        raw,
        pages,  # last: an API route always wins over a page's URL pattern
    ):
        app.include_router(module.router)
        routes.extend(module.router.routes)
    app.add_middleware(RateLimit, limits=settings.limits)
    app.add_middleware(BodyLimit, limits=settings.limits)
    app.add_middleware(ReadFastPath)
    # Outside the fast path: it reads `/api/models/gpt2` as `/api/models/~/gpt2` too.
    app.add_middleware(CanonicalRepoPaths, actions=repo_actions(routes))
    app.add_middleware(HttpMetrics, metrics=metrics)  # counts fast-path answers
    app.add_middleware(CancelledAtStop)  # outermost: a stop's cancellation unwinds through all
    return app
