"""Prometheus text for /metrics: cluster-wide counters from Redis, this process's latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

NAMESPACE = "presence_bridge"
COUNTERS = {
    "received": "Notification items received by the webhook.",
    "accepted": "Items verified and handed to the workers.",
}
DROPPED_HELP = "Items dropped by the webhook, by reason."


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

    def render(self, counters: dict[str, int], depths: dict[str, int]) -> bytes:
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
        return "\n".join(lines).encode() + b"\n" + generate_latest(self.registry)
