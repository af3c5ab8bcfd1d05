"""`/metrics` in Prometheus text: cluster-wide counters from Redis, this process's latency."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from core.queue import QUEUES
from core.state import accounts, delivery, intake
from core.state import subscriptions as sub_state
from core.state.accounts import AccountHealth

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "presence_bridge"
COUNTERS = {
    "received": "Notification items received by the webhook.",
    "accepted": "Items verified and handed to the workers.",
}
DROPPED_HELP = "Items dropped by the webhook, by reason."


@dataclass(frozen=True)
class TenantFigures:
    accounts: dict[str, int]  # status -> service accounts
    subscriptions: int
    polled: int
    dead_letters: int


TENANT_GAUGES = {
    "subscriptions": "Graph presence subscriptions the bridge holds.",
    "polled_users": "Users beyond the service accounts' capacity, read by polling instead.",
    "dead_letters": "PBX users whose latest profile could not be applied (see the CLI).",
}


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.enqueue_seconds = Histogram(
            "enqueue_seconds",
            "Time of the one Redis call that hands a request's items to the workers.",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
        )

    def render(
        self,
        counters: dict[str, int],
        depths: dict[str, int],
        tenants: dict[str, TenantFigures] | None = None,
    ) -> bytes:
        lines: list[str] = []
        for name, help_text in COUNTERS.items():
            metric = f"{NAMESPACE}_notifications_{name}_total"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} counter",
                f"{metric} {counters.get(name, 0)}",
            ]
        metric = f"{NAMESPACE}_notifications_dropped_total"
        lines += [f"# HELP {metric} {DROPPED_HELP}", f"# TYPE {metric} counter"]
        for field, value in sorted(counters.items()):
            if field.startswith("dropped:"):
                lines.append(f'{metric}{{reason="{field.split(":", 1)[1]}"}} {value}')
        metric = f"{NAMESPACE}_queue_depth"
        lines += [f"# HELP {metric} Work waiting in Redis, by queue.", f"# TYPE {metric} gauge"]
        for queue, depth in sorted(depths.items()):
            lines.append(f'{metric}{{queue="{queue}"}} {depth}')
        lines += _tenant_lines(tenants or {})
        return "\n".join(lines).encode() + b"\n" + generate_latest(self.registry)


def _tenant_lines(tenants: dict[str, TenantFigures]) -> list[str]:
    metric = f"{NAMESPACE}_service_accounts"
    lines = [f"# HELP {metric} Service accounts by token health (healthy, needs_sign_in, "
             "not_signed_in).", f"# TYPE {metric} gauge"]  # fmt: skip
    for tenant, figures in sorted(tenants.items()):
        for status, count in sorted(figures.accounts.items()):
            lines.append(f'{metric}{{tenant="{tenant}",status="{status}"}} {count}')
    for name, help_text in TENANT_GAUGES.items():
        metric = f"{NAMESPACE}_{name}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        field = "polled" if name == "polled_users" else name
        for tenant, figures in sorted(tenants.items()):
            lines.append(f'{metric}{{tenant="{tenant}"}} {getattr(figures, field)}')
    return lines


async def serve(request: Request) -> Response:
    """`GET /metrics`: the cluster's counters and gauges from Redis, this process's latency."""
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
        raw, intake_len, *rest = await pipe.execute()
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
