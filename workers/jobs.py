"""RQ entry points: few and thin. Each takes small JSON values and may run twice."""

from __future__ import annotations

import logging
import time
from typing import Any

from core import certificates
from core.cipher import CacheCipher
from core.errors import PbxError, TransientError
from core.queue import (
    ProfileReport,
    enqueue_deliver,
    enqueue_refresh_call,
    enqueue_tick,
    hand_to_clock,
)
from core.state import backoff, intake
from core.state.delivery import pending_users
from workers import call_presence, delivery, directory_sync, restore
from workers.pbx.base import Refreshing
from workers.pbx.registry import save_state
from workers.pipeline import BatchResult, PresenceUpdate, process, tick_users
from workers.rich import fetch_jwks, open_items
from workers.runtime import TenantRuntime, current

log = logging.getLogger("workers.jobs")


def _runtime(tenant: str) -> TenantRuntime | None:
    runtime = current().tenant(tenant)
    if runtime is None:
        log.warning("work for an unknown tenant dropped", extra={"tenant": tenant})
    return runtime


def _apply(tenant: str, runtime: TenantRuntime, result: BatchResult) -> None:
    """Deliver what the batch decided; schedule retries and damped changes."""
    redis = current().redis
    if result.changes:
        _deliver(tenant, runtime, [c.user for c in result.changes])
    if result.pending_due:
        due = max(result.pending_due.values())
        enqueue_tick(redis, tenant, sorted(result.pending_due), at=due + 0.05)


def _deliver_and_save(tenant: str, runtime: TenantRuntime, users: list[str]) -> delivery.Outcome:
    redis = current().redis
    outcome = delivery.deliver(redis, tenant, runtime.adapter, users)
    save_state(runtime.adapter, tenant, redis)
    return outcome


def _deliver(tenant: str, runtime: TenantRuntime, users: list[str]) -> delivery.Outcome:
    redis = current().redis
    outcome = _deliver_and_save(tenant, runtime, users)
    if outcome.transient:
        # A separate job retries with backoff, so this batch's other users are not held up;
        # a PBX that said when to come back (Retry-After) is not asked sooner.
        enqueue_deliver(redis, tenant, sorted(outcome.transient), outcome.retry_after)
    delivery.resume_later(current().redis, tenant, outcome)
    return outcome


def process_notifications(tenant: str, items: list[dict[str, Any]]) -> int:
    """Basic notifications name users whose presence changed: read it for all at once."""
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    intake.log_notifications(current().redis, tenant, items)
    observed = time.time()
    rich = [e for e in items if isinstance(e["item"].get("encryptedContent"), dict)]
    updates = [PresenceUpdate.from_graph(p, observed) for p in _open_rich(runtime, rich, observed)]
    ids = sorted({e["item"]["userId"] for e in items if e["item"].get("userId") and e not in rich})
    if ids:
        intake.forget_bare_dedup(current().redis, items)  # before the read: see there
        presences = runtime.graph.get_presences_by_user_id(ids)  # 650 ids a call
        updates += [PresenceUpdate.from_graph(p, observed) for p in presences]
    return _map_and_apply(tenant, runtime, updates)


def _map_and_apply(tenant: str, runtime: TenantRuntime, updates: list[PresenceUpdate]) -> int:
    if updates:
        shared_backoff = backoff.pbx(current().redis, tenant)
        result = process(
            current().redis,
            tenant,
            runtime.rules,
            runtime.settings.mapping.hold_seconds,
            updates,
            runtime.static_links,
            read_shown=lambda users: restore.read_shown(runtime.adapter, users, shared_backoff),
        )
        _apply(tenant, runtime, result)
    return len(updates)


def _open_rich(
    runtime: TenantRuntime, rich: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    if not rich:
        return []
    ctx = current()
    cipher = CacheCipher(ctx.settings.process.cache_key)
    private_keys = certificates.private_keys(ctx.redis, cipher, runtime.settings.name)
    jwks = fetch_jwks(runtime.settings, ctx.settings.process)
    opened, rejected = open_items(rich, runtime.settings, jwks, private_keys, now)
    intake.add_counters(ctx.redis, rejected)
    return opened


def process_presences(tenant: str, presences: list[dict[str, Any]]) -> int:
    """Presence read by the clock (resync sweep, polling): objects plus "observedAt"."""
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    updates = [
        PresenceUpdate.from_graph(p, float(p.get("observedAt") or time.time())) for p in presences
    ]
    return _map_and_apply(tenant, runtime, updates)


def process_lifecycle(tenant: str, items: list[dict[str, Any]]) -> int:
    """Jobs queued by earlier versions: the forwarder now hands lifecycle items to the clock."""
    hand_to_clock(current().redis, tenant, items)
    return len(items)


def process_pbx_events(tenant: str, items: list[dict[str, Any]]) -> int:
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    redis, app_id = current().redis, runtime.settings.client_id
    for entry in items:
        event = entry["item"]
        if event["type"] == "call_started":
            if call_presence.call_started(
                redis,
                tenant,
                runtime.graph,
                app_id,
                event["user"],
                event["call_id"],
                runtime.static_links,
            ):
                _schedule_refresh(tenant, event["user"])
        else:
            call_presence.call_ended(
                redis, tenant, runtime.graph, app_id, event["user"], event["call_id"]
            )
    return len(items)


def process_profile_reports(tenant: str, reports: list[dict[str, Any]]) -> int:
    """Profiles the PBX reports: a user's own choice wins until Teams next decides."""
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    parsed = [r for r in map(ProfileReport.from_item, reports) if r is not None]
    outcome = restore.take_reports(current().redis, tenant, parsed, runtime.static_links)
    if outcome.publish:
        _deliver(tenant, runtime, outcome.publish)
    return len(outcome.changes)


def _schedule_refresh(tenant: str, pbx_user: str) -> None:
    enqueue_refresh_call(current().redis, tenant, pbx_user, call_presence.REFRESH_AFTER)


def refresh_call_presence(tenant: str, pbx_user: str) -> bool:
    runtime = _runtime(tenant)
    if runtime is None:
        return False
    going_on = call_presence.refresh(
        current().redis, tenant, runtime.graph, runtime.settings.client_id, pbx_user
    )
    if going_on:
        _schedule_refresh(tenant, pbx_user)
    return going_on


def deliver_pending(tenant: str, users: list[str] | None = None) -> int:
    """Re-apply desired state (all pending users when none are named); retried by RQ, not
    before a PBX's Retry-After."""
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    if users is None:
        users = pending_users(current().redis, tenant)
    outcome = _deliver_and_save(tenant, runtime, users)
    delivery.resume_later(
        current().redis, tenant, outcome
    )  # deferred users are no failure: nothing to retry here
    if outcome.transient:
        raise TransientError(
            f"{len(outcome.transient)} user(s) not applied yet", retry_after=outcome.retry_after
        )
    return len(outcome.applied)


def tick_profiles(tenant: str, users: list[str]) -> int:
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    result = tick_users(current().redis, tenant, users)
    _apply(tenant, runtime, result)
    return len(result.changes)


def sync_directory(tenant: str, full: bool = False) -> dict[str, Any]:
    """Directory import or delta round, then relink (scheduled by the clock, or on demand)."""
    runtime = _runtime(tenant)
    if runtime is None:
        return {}
    report = directory_sync.sync_directory(
        runtime.settings, current().redis, runtime.graph, adapter=runtime.adapter, full=full
    )
    return dict(report.status())


def maintain_pbx(tenant: str) -> int:
    """The clock's PBX round: keep publications alive (SIP refresh before Expires), then
    re-apply desired state that is not applied yet (a PBX that came back)."""
    runtime = _runtime(tenant)
    if runtime is None:
        return 0
    redis = current().redis
    if isinstance(runtime.adapter, Refreshing):
        _refresh(tenant, runtime.adapter)
        save_state(runtime.adapter, tenant, redis)
    outcome = _deliver_and_save(tenant, runtime, pending_users(redis, tenant))
    delivery.resume_later(current().redis, tenant, outcome)
    return len(outcome.applied)


def _refresh(tenant: str, adapter: Refreshing) -> None:
    """Refresh publications unless the PBX backs off (the next round tries again)."""
    turn = delivery.PbxTurn(backoff.pbx(current().redis, tenant))
    if not turn.go:
        return
    try:
        if adapter.refresh_due():
            turn.answered()
    except PbxError as exc:  # delivery in the same round still runs, or defers
        if delivery.is_pbx_wide(exc):
            turn.away(exc)
        else:
            turn.answered()
        log.warning("pbx refresh failed", extra={"tenant": tenant, "error": str(exc)})
    finally:
        turn.close()
