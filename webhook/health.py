"""Liveness, readiness and metrics."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import keys
from core.queue import QUEUES

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    redis = request.app.state.redis
    try:
        await redis.ping()
        worker_alive = bool(await redis.exists(keys.WORKER_HEARTBEAT))
    except (RedisError, OSError):
        return JSONResponse({"status": "unready", "redis": False}, status_code=503)
    status = 200 if worker_alive else 503
    body = {"status": "ready" if worker_alive else "unready", "redis": True, "worker": worker_alive}
    return JSONResponse(body, status_code=status)


async def metrics(request: Request) -> Response:
    state = request.app.state
    counters: dict[str, int] = {}
    depths: dict[str, int] = {}
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.hgetall(keys.METRICS_HASH)
        pipe.xlen(keys.INTAKE_STREAM)
        for name in QUEUES:
            pipe.llen(f"rq:queue:{name}")
        raw, intake_len, *lengths = await pipe.execute()
        counters = {k.decode(): int(v) for k, v in raw.items()}
        depths = {"intake": int(intake_len)}
        depths.update({name: int(n) for name, n in zip(QUEUES, lengths, strict=True)})
    except (RedisError, OSError):
        pass  # still serve this process's own figures
    return Response(state.metrics.render(counters, depths), media_type=PROMETHEUS_TEXT)
