"""Prometheus text for /metrics: cluster-wide counters from Redis, this process's latency."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest

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
