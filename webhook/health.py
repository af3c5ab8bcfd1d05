"""Liveness, readiness and metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.queue import QUEUES
from core.state import accounts, callstate, coordination, delivery, intake
from core.state import subscriptions as sub_state
from core.state.accounts import AccountHealth
from webhook.metrics import TenantFigures

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


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
            accounts.queue_read_all(pipe, tenant.name)
            sub_state.queue_count(pipe, tenant.name)
            sub_state.queue_polled(pipe, tenant.name)
            delivery.queue_dead_letter_count(pipe, tenant.name)
        sources = [(t.name, t.pbx.callstate.source) for t in tenants if t.pbx.callstate]
        for name, source in sources:
            callstate.queue_status(pipe, name, source)
        raw, intake_len, *rest = await pipe.execute()
        split = len(rest) - len(sources)
        rest, statuses = rest[:split], rest[split:]
        lengths, per_tenant = rest[: len(QUEUES)], rest[len(QUEUES) :]
        counters = intake.decode_counters(raw)
        depths = {"intake": int(intake_len)}
        depths.update({name: int(n) for name, n in zip(QUEUES, lengths, strict=True)})
        for i, tenant in enumerate(tenants):
            health, subs, polled, dead = per_tenant[4 * i : 4 * i + 4]
            figures[tenant.name] = tenant_figures(
                tenant.service_accounts, accounts.health_from_raw(health), subs,
                sub_state.polled_from_raw(polled), dead,
            )  # fmt: skip
        for (name, source), status in zip(sources, statuses, strict=True):
            figures[name] = dataclasses.replace(
                figures[name],
                call_source=source,
                call_source_status=callstate.SourceStatus.from_bytes(status),
            )
    except (RedisError, OSError):
        pass  # still serve this process's own figures
    body = state.metrics.render(counters, depths, figures)
    return Response(body, media_type=PROMETHEUS_TEXT)


def tenant_figures(
    configured: list[str],
    health: Mapping[str, AccountHealth],
    subs: int,
    polled: list[str],
    dead: int,
) -> TenantFigures:
    by_status: dict[str, int] = {}
    for h in accounts.with_configured(health, configured):
        by_status[h.status.value] = by_status.get(h.status.value, 0) + 1
    return TenantFigures(by_status, int(subs), len(polled), int(dead))
