"""Reactions to Graph's lifecycle notifications, run by the clock.

The webhook verifies lifecycle items and appends them to the intake stream; the workers'
forwarder moves them to the tenant's lifecycle inbox (`core.state.intake`) and the clock, the
one writer of subscriptions, drains that inbox every few seconds:

- `reauthorizationRequired`: PATCH a new expiry, which also reauthorizes. The bridge never calls
  `/reauthorize`, so Graph's rule "not both within 10 minutes" cannot be broken. A PATCH that
  fails for a passing reason is owed and retried until the subscription expires
  (`subscriptions.reconcile.renew_owed`).
- `subscriptionRemoved`: create the account's subscription again, then resync.
- `missed`: resync (the sweep reads every linked user's presence).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core.errors import BridgeError
from core.state import intake
from core.state import subscriptions as sub_state
from core.state.coordination import FenceLost
from core.state.subscriptions import SubscriptionRecord
from subscriptions.actions import ActionReport, create, renew
from subscriptions.reconcile import guarded
from subscriptions.sweep import sweep
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)

DRAIN_BATCH = 500
# A reauthorization this recent already answered the challenge (Graph repeats it every few
# minutes). Only one made for a challenge counts: a create or a routine renewal just before a
# revocation has not answered it, and skipping would leave Graph holding the notifications.
RECENT_RENEWAL_SECONDS = 60.0
REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
SUBSCRIPTION_REMOVED = "subscriptionRemoved"
MISSED = "missed"


@dataclass
class LifecycleReport:
    tenant: str
    renewed: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    ignored: int = 0
    swept: bool = False
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "renewed": len(self.renewed),
                "recreated": len(self.recreated), "ignored": self.ignored,
                "swept": self.swept, "failed": self.failed}  # fmt: skip


def _item(entry: dict[str, Any]) -> dict[str, Any]:
    """Accept the bare Graph item or the intake envelope {"kind", "item"}."""
    inner = entry.get("item")
    return inner if isinstance(inner, dict) else entry


def handle_lifecycle(ctx: TenantView, items: list[dict[str, Any]]) -> LifecycleReport:
    """React to a batch of one tenant's lifecycle items (each at most once per subscription)."""
    report = LifecycleReport(ctx.name)
    needs_sweep = False
    seen: set[tuple[str, str]] = set()
    for entry in items:
        item = _item(entry)
        event, sid = str(item.get("lifecycleEvent", "")), str(item.get("subscriptionId", ""))
        if (event, sid) in seen:
            continue
        seen.add((event, sid))
        if event == MISSED:
            needs_sweep = True
            continue
        record = sub_state.read(ctx.redis, sid) if sid else None
        if record is None or record.tenant != ctx.name or not record.managed:
            report.ignored += 1  # not (or no longer) ours: deleted, replaced, another tenant
            continue
        if event == REAUTHORIZATION_REQUIRED:
            _reauthorize(ctx, record, report)
        elif event == SUBSCRIPTION_REMOVED:
            needs_sweep = True
            _recreate(ctx, record, report)
        else:
            report.ignored += 1
            log.info("tenant %s: unknown lifecycle event %r", ctx.name, event[:40])
    if needs_sweep:
        report.swept = _sweep(ctx, report)
    return report


def _reauthorize(ctx: TenantView, record: SubscriptionRecord, report: LifecycleReport) -> None:
    now = ctx.now()
    answered = ctx.reauthorized.get(record.subscription_id)
    if answered is not None and now - answered < RECENT_RENEWAL_SECONDS:
        return
    result = ActionReport(ctx.name)
    if guarded(ctx, record.account, result, partial(renew, ctx, record, result)):
        ctx.reauthorized[record.subscription_id] = now
        report.renewed.append(record.account)
    report.failed.update(result.deferred | result.failed)


def _recreate(ctx: TenantView, record: SubscriptionRecord, report: LifecycleReport) -> None:
    # Graph already removed it; forgetting first means a failed create is retried by the
    # next reconcile (which sees no subscription for the account).
    sub_state.forget(ctx.redis, record, ctx.fence)
    result = ActionReport(ctx.name)
    action = partial(create, ctx, record.account, record.user_ids, result)
    if guarded(ctx, record.account, result, action):
        report.recreated.append(record.account)
    report.failed.update(result.deferred | result.failed)


def _sweep(ctx: TenantView, report: LifecycleReport) -> bool:
    try:
        sweep(ctx.redis, ctx.name, ctx.graph(None), ctx.budget, fence=ctx.fence)
    except FenceLost:
        raise
    except BridgeError as exc:
        sub_state.request_sweep(ctx.redis, ctx.name, ctx.fence)  # the sweep schedule pays it
        report.failed["sweep"] = str(exc)
        return False
    return True


def drain(ctx: TenantView, limit: int = DRAIN_BATCH) -> LifecycleReport:
    """Take up to `limit` queued lifecycle items of the tenant and act on them."""
    items = intake.take_lifecycle(ctx.redis, ctx.name, limit)
    if not items:
        return LifecycleReport(ctx.name)
    return handle_lifecycle(ctx, items)
