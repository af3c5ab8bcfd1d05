"""The Starlette app factory of the web process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from core import intake, keys
from core.redis import connect_async
from core.settings import Settings, load_settings
from webhook import builtin_api, health, notifications, pbx_events
from webhook.lookup import SubscriptionLookup
from webhook.metrics import WebMetrics


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = connect_async(settings.process.redis_url)
        app.state.redis = redis
        app.state.lookup = SubscriptionLookup(redis)
        app.state.append = redis.register_script(intake.APPEND_SCRIPT)
        yield
        await redis.aclose()

    routes = [
        Route("/graph/notifications", notifications.receive, methods=["POST"]),
        Route("/graph/lifecycle", notifications.receive, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *builtin_api.routes,
        *pbx_events.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = WebMetrics()
    app.state.intake_key = keys.INTAKE_STREAM
    app.state.metrics_key = keys.METRICS_HASH
    return app


def factory() -> Starlette:
    """Entry point for uvicorn (`--factory`), so each web worker builds its own app."""
    return create_app(load_settings())
