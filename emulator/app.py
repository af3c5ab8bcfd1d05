"""The emulator as one Starlette app: every module's `routes(world)` behind the fault switches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from emulator import (
    control,
    control_graph,
    delivery,
    faults,
    identity,
    presence,
    subscriptions,
    users,
)
from emulator.tokens import GraphError
from emulator.world import World

# Graph's generic codes for errors the router itself raises (unknown path or method).
_ROUTER_CODES = {404: "Request_ResourceNotFound", 405: "Request_BadRequest"}


def all_routes(world: World) -> list[BaseRoute]:
    # Order matters where paths overlap: /v1.0/users/delta before /v1.0/users/{id}.
    return [
        *control.routes(world),
        *control_graph.routes(world),
        *identity.routes(world),
        *users.routes(world),
        *presence.routes(world),
        *subscriptions.routes(world),
    ]


async def _graph_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, GraphError):
        return JSONResponse(exc.body, exc.status_code, headers=exc.headers)
    body = GraphError(exc.status_code, _ROUTER_CODES.get(exc.status_code, "BadRequest"), exc.detail)
    return JSONResponse(body.body, exc.status_code, headers=exc.headers)


def create_app(world: World) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        delivery.shutdown(world)  # stop retry timers and sender threads with the server

    app = Starlette(
        routes=all_routes(world),
        middleware=[Middleware(faults.FaultMiddleware, world=world)],
        exception_handlers={HTTPException: _graph_error},
        lifespan=lifespan,
    )
    app.state.world = world
    return app
