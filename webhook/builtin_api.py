"""The `builtin` adapter's API: PBXs poll a user's profile, list them, or follow an SSE stream;
a user's own choice made on the PBX side is sent back with a PUT (or POST)."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import AsyncIterator

import orjson
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.queue import ProfileReport, enqueue_profile_reports
from core.state import pbx
from webhook.auth import key_matches, presented_key
from webhook.notifications import BodyTooLarge, read_body

KEEPALIVE_SECONDS = 15.0
BLOCK_MS = 1000  # below the client's socket timeout
MAX_NAME_CHARS = 128  # a user or profile name; PBXs keep theirs far shorter
SOURCE = "builtin-api"
_EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a Redis stream id, as the events carry


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
        served = await pbx.read_builtin_profile(
            request.app.state.redis, tenant, request.path_params["user"]
        )
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    if served is None:
        return JSONResponse({"error": "no profile for this user yet"}, status_code=404)
    return Response(served.to_bytes(), media_type="application/json")


def _name(value: object) -> str | None:
    """A usable user or profile name: some visible text, no control characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        return None
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        return None
    return value


async def set_profile(request: Request) -> Response:
    """The user chose a profile on the PBX side: it wins until Teams next decides (202; the
    worker publishes it, so GET and the event stream show it a moment later)."""
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    limit = request.app.state.settings.process.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return JSONResponse({"error": "body too large"}, status_code=413)
    except ClientDisconnect:
        return Response(status_code=400)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    user = _name(request.path_params["user"])
    profile = _name(payload.get("profile")) if isinstance(payload, dict) else None
    if user is None or profile is None:
        return JSONResponse(
            {"error": f"send {{\"profile\": \"<name>\"}}: a name of 1 to {MAX_NAME_CHARS} "
                      "visible characters, for a user named the same way"},
            status_code=400,
        )  # fmt: skip
    report = ProfileReport(user, profile, SOURCE, time.time(), on_pbx=False)
    try:
        await run_in_threadpool(
            enqueue_profile_reports, request.app.state.sync_redis, tenant, [report]
        )
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    return JSONResponse({"user": user, "profile": profile}, status_code=202)


async def users(request: Request) -> Response:
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    try:
        served = await pbx.read_builtin_profiles(request.app.state.redis, tenant)
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    return JSONResponse({"value": [p.to_dict() for p in served]})


async def events(request: Request) -> Response:
    tenant = _authorised(request)
    if isinstance(tenant, Response):
        return tenant
    start = request.headers.get("last-event-id") or "$"
    if start != "$" and not _EVENT_ID.fullmatch(start):
        # Redis refuses any other id, and the stream would retry it every second for good.
        return JSONResponse({"error": "Last-Event-ID must be an id this stream sent"}, 400)
    return StreamingResponse(
        _stream(request, tenant, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request, tenant: str, last_id: str) -> AsyncIterator[bytes]:
    redis = request.app.state.redis
    if last_id == "$":
        last_id = await pbx.builtin_events_position(redis, tenant)
    yield b": connected\n\n"
    idle = 0.0
    loop = asyncio.get_running_loop()
    while not await request.is_disconnected():
        started = loop.time()
        try:
            read = await pbx.read_builtin_events(redis, {tenant: last_id}, block_ms=BLOCK_MS,
                                                 count=100)  # fmt: skip
        except (RedisError, OSError):
            await asyncio.sleep(1.0)  # Redis is away; the client keeps its connection
            read = []
        for event in read:
            last_id = event.id
            yield (b"id: " + event.id.encode() + b"\nevent: profile\ndata: " + event.data
                   + b"\n\n")  # fmt: skip
            idle = 0.0
        idle += loop.time() - started
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield b": keep-alive\n\n"


routes = [
    Route("/api/v1/tenants/{tenant}/users/{user}/profile", profile, methods=["GET"]),
    Route("/api/v1/tenants/{tenant}/users/{user}/profile", set_profile, methods=["PUT", "POST"]),
    Route("/api/v1/tenants/{tenant}/users", users, methods=["GET"]),
    Route("/api/v1/tenants/{tenant}/events", events, methods=["GET"]),
]
