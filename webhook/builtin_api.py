"""The `builtin` adapter's API: PBXs poll a user's profile, list them, or follow an SSE stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core import keys
from webhook.auth import key_matches, presented_key

KEEPALIVE_SECONDS = 15.0
BLOCK_MS = 1000  # below the client's socket timeout


def _authorised(request: Request) -> str | Response:
    tenant_name = request.path_params["tenant"]
    tenant = request.app.state.settings.tenant(tenant_name)
    secret = tenant.pbx.secret if tenant is not None and tenant.pbx.adapter == "builtin" else None
    if not key_matches(presented_key(request), secret):
        return JSONResponse(
            {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    return str(tenant_name)


async def profile(request: Request) -> Response:
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    try:
        raw = await request.app.state.redis.hget(
            keys.builtin_profiles(tenant), request.path_params["user"]
        )
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    if raw is None:
        return JSONResponse({"error": "no profile for this user yet"}, status_code=404)
    return Response(raw, media_type="application/json")


async def users(request: Request) -> Response:
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    try:
        raw = await request.app.state.redis.hgetall(keys.builtin_profiles(tenant))
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    items = sorted((orjson.loads(v) for v in raw.values()), key=lambda p: p["user"])
    return JSONResponse({"value": items})


async def events(request: Request) -> Response:
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    start = request.headers.get("last-event-id") or "$"
    return StreamingResponse(
        _stream(request, tenant, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request, tenant: str, last_id: str) -> AsyncIterator[bytes]:
    redis = request.app.state.redis
    if last_id == "$":
        # Pin "now" to a real id so nothing slips between reads.
        try:
            info = await redis.xinfo_stream(keys.builtin_events(tenant))
            last_id = info["last-generated-id"].decode()
        except RedisError:
            last_id = "0-0"
    yield b": connected\n\n"
    idle = 0.0
    loop = asyncio.get_running_loop()
    while not await request.is_disconnected():
        started = loop.time()
        try:
            read = await redis.xread(
                {keys.builtin_events(tenant): last_id}, block=BLOCK_MS, count=100
            )
        except (RedisError, OSError):
            await asyncio.sleep(1.0)  # Redis is away; the client keeps its connection
            read = []
        for _, entries in read or []:
            for entry_id, fields in entries:
                last_id = entry_id.decode()
                yield b"id: " + entry_id + b"\nevent: profile\ndata: " + fields[b"data"] + b"\n\n"
                idle = 0.0
        idle += loop.time() - started
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield b": keep-alive\n\n"


routes = [
    Route("/api/v1/tenants/{tenant}/users/{user}/profile", profile, methods=["GET"]),
    Route("/api/v1/tenants/{tenant}/users", users, methods=["GET"]),
    Route("/api/v1/tenants/{tenant}/events", events, methods=["GET"]),
]
