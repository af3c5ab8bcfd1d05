"""Liveness, readiness and metrics."""

from __future__ import annotations

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import keys
from core.accounts import normalize
from core.queue import QUEUES
from core.state import delivery, intake
from webhook.metrics import TenantFigures

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
    figures: dict[str, TenantFigures] = {}
    try:
        pipe = state.redis.pipeline(transaction=False)
        intake.queue_figures(pipe)
        for name in QUEUES:
            pipe.llen(f"rq:queue:{name}")
        tenants = state.settings.tenants
        for tenant in tenants:
            pipe.hgetall(keys.account_health(tenant.name))
            pipe.scard(keys.tenant_subscriptions(tenant.name))
            pipe.get(keys.polled(tenant.name))
            delivery.queue_dead_letter_count(pipe, tenant.name)
        raw, intake_len, *rest = await pipe.execute()
        lengths, per_tenant = rest[: len(QUEUES)], rest[len(QUEUES) :]
        counters = intake.decode_counters(raw)
        depths = {"intake": int(intake_len)}
        depths.update({name: int(n) for name, n in zip(QUEUES, lengths, strict=True)})
        for i, tenant in enumerate(tenants):
            health, subs, polled, dead = per_tenant[4 * i : 4 * i + 4]
            figures[tenant.name] = tenant_figures(tenant.service_accounts, health, subs,
                                                  polled, dead)  # fmt: skip
    except (RedisError, OSError):
        pass  # still serve this process's own figures
    body = state.metrics.render(counters, depths, figures)
    return Response(body, media_type=PROMETHEUS_TEXT)


def tenant_figures(
    configured: list[str],
    health: dict[bytes, bytes],
    subs: int,
    polled: bytes | None,
    dead: int,
) -> TenantFigures:
    statuses = {k.decode(): str(orjson.loads(v)["status"]) for k, v in health.items()}
    accounts: dict[str, int] = {}
    for account in {normalize(a) for a in configured} | set(statuses):
        status = statuses.get(account, "not_signed_in")
        accounts[status] = accounts.get(status, 0) + 1
    return TenantFigures(accounts, int(subs), len(orjson.loads(polled)) if polled else 0, int(dead))
