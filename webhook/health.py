"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers, a worker is alive)."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.state import coordination
from core.version import VERSION


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": VERSION})


async def readyz(request: Request) -> Response:
    redis = request.app.state.redis
    try:
        await redis.ping()
        worker_alive = await coordination.alive_async(redis, coordination.Process.WORKER)
    except (RedisError, OSError):
        return JSONResponse({"status": "unready", "redis": False}, status_code=503)
    status = 200 if worker_alive else 503
    body = {"status": "ready" if worker_alive else "unready", "redis": True, "worker": worker_alive}
    return JSONResponse(body, status_code=status)
