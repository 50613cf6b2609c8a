"""create_app(): the FastAPI application of one node, built from Settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from mirror.outbox import Pusher
from mirror.pullthrough import MirrorBlobSources, public_copies
from registry import __version__
from registry.api import errors, openapi
from registry.api.buffers import TransferBuffers
from registry.api.fastpath import ReadFastPath
from registry.api.limits import BodyLimit
from registry.api.ratelimit import RateLimit
from registry.api.routes import (
    discovery,
    hf_repos,
    hf_resolve,
    hf_tree,
    hf_upload,
    mirrors,
    native,
    peers,
    status,
    sync,
)
from registry.metrics import HttpMetrics, Metrics, NodeCollector
from registry.node import Node
from registry.service.scrub import ScrubLoop
from registry.service.worker import Worker
from registry.settings import Settings
from sync.loop import SyncLoop


def _operation_id(route: APIRoute) -> str:
    return route.name


def helpers(node: Node) -> list[Worker]:
    """The node's background helpers; each one off only delays or thins answers."""
    settings = node.settings
    counts = node.downloads
    workers = [
        Worker(
            "download-counts",
            counts.flush,
            settings.downloads_flush_interval,
            drain=False,
            on_stop=counts.flush,  # what was counted before a clean stop is kept
        )
    ]
    leases = node.leases  # one process of the node runs each of these
    if settings.scan.enabled:
        workers.append(
            Worker("scanner", node.scans.run_once, settings.scan.interval, leases=leases)
        )
    if settings.mirror.enabled:
        pusher = Pusher(
            node.mirrors,
            node.reads,
            node.blobs,
            allow_private_redirects=settings.allow_private_redirects,
        )
        workers.append(
            Worker(
                "mirrors",
                pusher.run_once,
                settings.mirror.interval,
                leases=leases,
                on_stop=pusher.close,
            )
        )
    if settings.index.enabled:
        batch = settings.index.batch
        workers.append(
            Worker(
                "indexer",
                lambda: node.indexer.run_once(batch),
                settings.index.interval,
                leases=leases,
            )
        )
    return workers


def create_app(settings: Settings | None = None, *, node: Node | None = None) -> FastAPI:
    """Build the app; the lifespan opens the node (or uses `node`) and closes what it opened."""
    settings = settings or (node.settings if node else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = node or Node.open(settings)
        allow_private_redirects = opened.settings.allow_private_redirects
        opened.notifier.bind(asyncio.get_running_loop())
        opened.leases.start()
        replicator = SyncLoop(
            opened.identity,
            opened.leases,
            opened.peers,
            opened.replication,
            opened.uploads,
            opened.settings.sync,
            MirrorBlobSources(
                opened.mirrors,
                public_copies(opened.lookup),
                allow_private_redirects=allow_private_redirects,
            ),
            allow_private_redirects=allow_private_redirects,
        )
        replicator.start()
        scrubber = ScrubLoop(opened.scrub, opened.settings.scrub, replicator.fetcher.fetch_now)
        scrubber.start()
        workers = helpers(opened)
        for worker in workers:
            worker.start()
        collector = NodeCollector(opened.status.sample)
        metrics.registry.register(collector)
        app.state.node, app.state.sync = opened, replicator
        try:
            yield
        finally:
            scrubber.stop()
            replicator.stop()
            for worker in workers:
                worker.stop()
            opened.leases.stop()
            metrics.registry.unregister(collector)
            if node is None:
                opened.close()

    metrics = Metrics(CollectorRegistry())  # injected: no default-registry globals
    app = FastAPI(
        title="modelyard",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.metrics = metrics
    app.state.buffers = TransferBuffers(settings.limits.transfer_buffer_bytes)
    openapi.install(app)
    errors.install(app)
    for module in (
        native,
        discovery,
        sync,
        peers,
        mirrors,
        status,
        hf_repos,
        hf_tree,
        hf_upload,
        hf_resolve,
    ):
        app.include_router(module.router)
    app.add_middleware(RateLimit, limits=settings.limits)
    app.add_middleware(BodyLimit, limits=settings.limits)
    app.add_middleware(ReadFastPath)
    app.add_middleware(HttpMetrics, metrics=metrics)  # outermost: counts fast-path answers
    return app
