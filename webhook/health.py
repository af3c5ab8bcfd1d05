"""Liveness (`/healthz`), readiness (`/readyz`: this web process can durably queue, i.e.
Redis accepts a write) and the system's health (`/health/system`: workers, clock, backlog).

Readiness is only about this process: while workers are down it still queues what Graph
sends, so a load balancer must keep it in rotation. The rest is for a monitor.
"""

from __future__ import annotations

import time

from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.state import coordination, intake
from core.version import VERSION
from webhook.auth import bearer_token, key_matches


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": VERSION})


async def readyz(request: Request) -> Response:
    """200 when Redis takes a write (PING alone passes on a read-only or full Redis)."""
    try:
        await coordination.probe_write_async(request.app.state.redis, time.time())
    except (RedisError, OSError) as exc:
        # Redis's error code (READONLY, OOM, NOREPLICAS) or the class: the message of a
        # connection error can carry the Redis address.
        return JSONResponse(
            {"status": "unready", "redis": False, "reason": _reason(exc)}, status_code=503
        )
    return JSONResponse({"status": "ready", "redis": True})


# redis-py strips the code from the replies it maps to a class of its own.
_CODES: dict[type[Exception], str] = {ReadOnlyError: "READONLY", OutOfMemoryError: "OOM"}


def _reason(exc: Exception) -> str:
    for cls, code in _CODES.items():
        if isinstance(exc, cls):
            return code
    if type(exc) is ResponseError and exc.args:
        return str(exc.args[0]).split(" ", 1)[0]  # the reply's code, e.g. NOREPLICAS
    return type(exc).__name__


async def system(request: Request) -> Response:
    """`GET /health/system`: 200 when a worker and the clock are alive and report nothing."""
    token = request.app.state.settings.process.metrics_token
    if token is not None and not key_matches(bearer_token(request), token):
        return Response(
            b"unauthorized\n", 401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    redis = request.app.state.redis
    now = time.time()
    try:
        pipe = redis.pipeline(transaction=False)
        for process in coordination.Process:
            coordination.queue_alive(pipe, process)
            coordination.queue_problems(pipe, process)
        results = await pipe.execute()
        length, pending = await intake.depth_async(redis)
    except (RedisError, OSError) as exc:
        body = {"status": "unhealthy", "redis": False, "reason": _reason(exc)}
        return JSONResponse(body, status_code=503)
    processes: dict[str, object] = {}
    healthy = True
    for i, process in enumerate(coordination.Process):
        alive = bool(results[2 * i])
        problems = coordination.problems_from(results[2 * i + 1], now)
        healthy = healthy and alive and not problems
        processes[process.value] = {"alive": alive, "problems": problems}
    return JSONResponse(
        {
            "status": "healthy" if healthy else "unhealthy",
            "redis": True,
            **processes,
            "intake": {"length": length, "pending": pending},  # reported, not judged
        },
        status_code=200 if healthy else 503,
    )
