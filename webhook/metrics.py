"""`/metrics` in Prometheus text: cluster-wide counters from Redis, this process's latency."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from core.queue import QUEUES, queue_key
from core.state import accounts, backoff, callstate, coordination, delivery, intake
from core.state import subscriptions as sub_state
from core.state.accounts import AccountHealth
from core.state.backoff import BackoffState
from core.state.callstate import SourceStatus, parse_counter_field
from webhook.auth import bearer_token, key_matches

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "presence_bridge"
COUNTERS = {
    "received": "Notification items received by the webhook.",
    "accepted": "Items verified and handed to the workers.",
}
DROPPED_HELP = "Items dropped by the webhook, by reason."
BACKOFF_HELP = (
    "Seconds until a peer that throttled or went away may be probed again, per tenant and "
    "peer (pbx, graph); 0 while its probe is due or running. Absent: not backing off."
)
CALLSTATE_HELP = (
    "Call-state listeners' events by tenant, source and event: call_started, call_ended, "
    "connects, disconnects, resyncs, unreachable, login_failures, emit_failures, dropped, leads."
)

PROCESS_UP_HELP = "1 while a process of this type (worker, clock) has a fresh heartbeat."
PROCESS_PROBLEMS_HELP = (
    "What the processes of this type report they need from Redis and cannot have (reasons)."
)


@dataclass(frozen=True)
class TenantFigures:
    accounts: dict[str, int]  # status -> service accounts
    subscriptions: int
    polled: int
    dead_letters: int
    call_source: str | None = None  # the kind of [tenants.pbx.callstate], if any
    call_source_status: SourceStatus | None = None  # None: no listener leads
    backoffs: tuple[BackoffState, ...] = ()  # its PBX and Graph app, while they back off


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
        processes: Mapping[str, tuple[bool, int]] | None = None,
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
        metric = f"{NAMESPACE}_callstate_events_total"
        lines += [f"# HELP {metric} {CALLSTATE_HELP}", f"# TYPE {metric} counter"]
        for field, value in sorted(counters.items()):
            parsed = parse_counter_field(field)
            if parsed is not None:
                tenant, source, event = parsed
                labels = f'tenant="{tenant}",source="{source}",event="{event}"'
                lines.append(f"{metric}{{{labels}}} {value}")
        metric = f"{NAMESPACE}_queue_depth"
        lines += [f"# HELP {metric} Work waiting in Redis, by queue.", f"# TYPE {metric} gauge"]
        for queue, depth in sorted(depths.items()):
            lines.append(f'{metric}{{queue="{queue}"}} {depth}')
        lines += _process_lines(processes or {})
        lines += _tenant_lines(tenants or {})
        return "\n".join(lines).encode() + b"\n" + generate_latest(self.registry)


def _process_lines(processes: Mapping[str, tuple[bool, int]]) -> list[str]:
    """Per process type (worker, clock): a heartbeat is fresh; what its instances report."""
    up, problems = f"{NAMESPACE}_process_up", f"{NAMESPACE}_process_problems"
    lines = [f"# HELP {up} {PROCESS_UP_HELP}", f"# TYPE {up} gauge"]
    lines += [f'{up}{{process="{p}"}} {int(alive)}' for p, (alive, _) in sorted(processes.items())]
    lines += [f"# HELP {problems} {PROCESS_PROBLEMS_HELP}", f"# TYPE {problems} gauge"]
    lines += [f'{problems}{{process="{p}"}} {n}' for p, (_, n) in sorted(processes.items())]
    return lines


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
    return lines + _callstate_lines(tenants) + _backoff_lines(tenants, time.time())


def _backoff_lines(tenants: dict[str, TenantFigures], now: float) -> list[str]:
    seconds, failures = f"{NAMESPACE}_backoff_seconds", f"{NAMESPACE}_backoff_failures"
    lines = [f"# HELP {seconds} {BACKOFF_HELP}", f"# TYPE {seconds} gauge"]
    states = [s for _, figures in sorted(tenants.items()) for s in figures.backoffs]
    for state in states:
        labels = f'tenant="{state.tenant}",peer="{state.peer.partition(":")[0]}"'
        lines.append(f"{seconds}{{{labels}}} {backoff.seconds_left(state, now)}")
    lines += [
        f"# HELP {failures} Failed calls in a row of a peer that backs off (its back-off grows).",
        f"# TYPE {failures} gauge",
    ]
    for state in states:
        labels = f'tenant="{state.tenant}",peer="{state.peer.partition(":")[0]}"'
        lines.append(f"{failures}{{{labels}}} {state.failures}")
    return lines


def _callstate_lines(tenants: dict[str, TenantFigures]) -> list[str]:
    sources = {t: f for t, f in sorted(tenants.items()) if f.call_source is not None}
    up, calls = f"{NAMESPACE}_callstate_up", f"{NAMESPACE}_callstate_active_calls"
    lines = [
        f"# HELP {up} 1 while a call-state listener leads and is logged in to the PBX.",
        f"# TYPE {up} gauge",
    ]
    for tenant, figures in sources.items():
        status = figures.call_source_status
        value = int(status is not None and status.connected)
        lines.append(f'{up}{{tenant="{tenant}",source="{figures.call_source}"}} {value}')
    lines += [f"# HELP {calls} PBX calls the leading listener follows.", f"# TYPE {calls} gauge"]
    for tenant, figures in sources.items():
        status = figures.call_source_status
        value = status.active_calls if status is not None else 0
        lines.append(f'{calls}{{tenant="{tenant}",source="{figures.call_source}"}} {value}')
    return lines


async def serve(request: Request) -> Response:
    """`GET /metrics`: the cluster's counters and gauges from Redis, this process's latency."""
    state = request.app.state
    token = state.settings.process.metrics_token
    if token is not None and not key_matches(bearer_token(request), token):
        return Response(
            b"unauthorized\n", 401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    counters: dict[str, int] = {}
    depths: dict[str, int] = {}
    figures: dict[str, TenantFigures] = {}
    processes: dict[str, tuple[bool, int]] = {}
    try:
        pipe = state.redis.pipeline(transaction=False)
        intake.queue_figures(pipe)
        for name in QUEUES:
            pipe.llen(queue_key(name))
        tenants = state.settings.tenants
        for tenant in tenants:
            accounts.queue_read_all(pipe, tenant.name)
            sub_state.queue_count(pipe, tenant.name)
            sub_state.queue_polled(pipe, tenant.name)
            delivery.queue_dead_letter_count(pipe, tenant.name)
            backoff.queue_read(pipe, tenant.name, _peers(tenant.client_id))
        sources = [(t.name, t.pbx.callstate.source) for t in tenants if t.pbx.callstate]
        for name, source in sources:
            callstate.queue_status(pipe, name, source)
        for process in coordination.Process:
            coordination.queue_alive(pipe, process)
            coordination.queue_problems(pipe, process)
        raw, intake_len, *rest = await pipe.execute()
        cut = len(rest) - 2 * len(coordination.Process)
        rest, beats = rest[:cut], rest[cut:]
        now = time.time()
        processes = {
            p.value: (bool(beats[2 * i]), len(coordination.problems_from(beats[2 * i + 1], now)))
            for i, p in enumerate(coordination.Process)
        }
        split = len(rest) - len(sources)
        rest, statuses = rest[:split], rest[split:]
        lengths, per_tenant = rest[: len(QUEUES)], rest[len(QUEUES) :]
        counters = intake.decode_counters(raw)
        depths = {"intake": int(intake_len)}
        depths.update({name: int(n) for name, n in zip(QUEUES, lengths, strict=True)})
        for i, tenant in enumerate(tenants):
            health, subs, polled, dead, *peers = per_tenant[6 * i : 6 * i + 6]
            figures[tenant.name] = dataclasses.replace(tenant_figures(
                tenant.service_accounts, accounts.health_from_raw(health), subs,
                sub_state.polled_from_raw(polled), dead,
            ), backoffs=tuple(backoff.states_from(
                tenant.name, _peers(tenant.client_id), peers
            )))  # fmt: skip
        for (name, source), status in zip(sources, statuses, strict=True):
            figures[name] = dataclasses.replace(
                figures[name],
                call_source=source,
                call_source_status=callstate.SourceStatus.from_bytes(status),
            )
    except (RedisError, OSError):
        pass  # still serve this process's own figures
    body = state.metrics.render(counters, depths, figures, processes)
    return Response(body, media_type=PROMETHEUS_TEXT)


def _peers(app_id: str) -> list[str]:
    return [backoff.PBX, backoff.graph_peer(app_id)]


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
