"""The Starlette app factory of the web process."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.redis import connect, connect_async
from core.settings import Settings, load_settings
from webhook import builtin_api, health, metrics, notifications, oauth, pbx_events
from webhook.admin import routes as admin_routes
from webhook.fastpath import FastPath
from webhook.handoff import IntakeWriter
from webhook.lookup import SubscriptionLookup
from webhook.metrics import WebMetrics


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = connect_async(settings.process.redis_url)
        app.state.redis = redis
        app.state.lookup = SubscriptionLookup(redis)
        # Off the event loop, in the thread pool: RQ, the status page, sign-ins.
        app.state.sync_redis = connect(settings.process.redis_url)
        app.state.intake = IntakeWriter(redis)
        yield
        await app.state.intake.aclose()
        app.state.sync_redis.close()
        await redis.aclose()

    routes = [
        Route("/graph/notifications", notifications.receive, methods=["POST"]),
        Route("/graph/lifecycle", notifications.receive, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/health/system", health.system, methods=["GET"]),
        Route("/metrics", metrics.serve, methods=["GET"]),
        *builtin_api.routes,
        *pbx_events.routes,
        *oauth.routes,
        *admin_routes.routes,
    ]
    # The app applies the proxy headers itself (uvicorn's own pass is off in __main__), so the
    # trusted proxies are a setting and every test of the app sees what production does.
    proxies = Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.process.forwarded_allow_ips)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[proxies])
    app.state.settings = settings
    app.state.pbx_keyring = pbx_events.keyring(settings)
    app.state.pbx_own_key_tenants = pbx_events.own_key_tenants(settings)
    app.state.metrics = WebMetrics()
    return app


# Requests allocate many short-lived dicts that reference counting frees; generation-0
# passes over them found nothing and cost ~15 % of a 50-item request (docs/BENCHMARKS.md).
GC_GEN0_THRESHOLD = 50_000


def factory() -> FastPath:
    """Entry point for uvicorn (`--factory`), so each web worker builds its own app."""
    app = FastPath(create_app(load_settings()))
    # Once per web process (not in create_app, which tests call in their own process):
    # the objects of start-up live for ever, so full collections need not walk them.
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    return app
