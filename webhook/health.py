"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers, a worker is alive and
reports nothing it cannot do)."""

from __future__ import annotations

import time

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.state import coordination
from core.version import VERSION


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": VERSION})


async def readyz(request: Request) -> Response:
    redis = request.app.state.redis
    worker = coordination.Process.WORKER
    try:
        await redis.ping()
        worker_alive = await coordination.alive_async(redis, worker)
        problems = await coordination.problems_async(redis, worker, time.time())
    except (RedisError, OSError):
        return JSONResponse({"status": "unready", "redis": False}, status_code=503)
    ready = worker_alive and not problems
    body: dict[str, object] = {
        "status": "ready" if ready else "unready",
        "redis": True,
        "worker": worker_alive,
    }
    if problems:
        body["problems"] = problems  # what a worker needs from Redis and cannot have
    return JSONResponse(body, status_code=200 if ready else 503)
