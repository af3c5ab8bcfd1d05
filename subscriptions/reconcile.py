"""Reconcile a tenant's presence subscriptions: desired (the plan) against actual (Redis, Graph).

One subscription per healthy service account, created with a lifecycle URL and a fresh
clientState, renewed by PATCH well before its 60 minutes are up (`subscriptions.actions`).
A 429 defers the account for `Retry-After` and leaves the 5xx count alone; a 5xx backs it off
exponentially. A failed renewal is owed and retried (`renew_owed`, every few seconds) until the
subscription expires: its back-off never reaches past half the time left. A chunk whose users
changed is deleted and recreated, since a subscription's resource cannot be PATCHed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial

from core.errors import BridgeError
from core.state import certificates as cert_state
from core.state import links
from core.state import subscriptions as sub_state
from core.state.coordination import FenceLost
from core.state.subscriptions import HeldSubscription, ReconcileStatus, SubscriptionRecord
from subscriptions import planner, polling
from subscriptions.actions import ActionReport, create, delete, renew
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)

RENEW_WITHIN_SECONDS = 20 * 60.0  # renew when this close to expiry (reconcile runs every minute)
RETRY_AFTER_DEFAULT_SECONDS = 60.0  # a 429 without Retry-After
BACKOFF_BASE_SECONDS = 30.0  # after a 5xx: 30 s, 60 s, 120 s... up to the cap
BACKOFF_MAX_SECONDS = 15 * 60.0
# A renewal owed is tried again at least this often while its subscription lives.
OWED_RETRY_MIN_SECONDS = 5.0


def backoff_delay(
    exc: BridgeError, failures: int, window_left: float | None = None
) -> tuple[float, bool]:
    """Seconds to wait after `exc`, and whether it was a throttle (429).

    `failures` are the failures in a row before this one. A 429 waits its Retry-After and
    nothing else. A 5xx waits 30 s, 60 s, 120 s... (at least its Retry-After), and for an owed
    renewal at most half of `window_left`, so it is tried again before the subscription ends.
    """
    retry_after = exc.retry_after
    if getattr(exc, "status", None) == 429:
        return (float(retry_after) if retry_after is not None else RETRY_AFTER_DEFAULT_SECONDS,
                True)  # fmt: skip
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0**failures)
    if window_left is not None:
        delay = min(delay, max(OWED_RETRY_MIN_SECONDS, window_left / 2))
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay, False


def _defer(ctx: TenantView, account: str, exc: BridgeError, report: ActionReport) -> None:
    now = ctx.now()
    owed = sub_state.owed_renewal(ctx.redis, ctx.name, account)
    left = owed.until - now if owed is not None else None
    failures = sub_state.failures(ctx.redis, ctx.name, account)
    delay, throttled = backoff_delay(exc, failures, left)
    sub_state.record_backoff(ctx.redis, ctx.name, account, now + delay, str(exc), ctx.fence,
                             throttled=throttled)  # fmt: skip
    report.deferred[account] = str(exc)
    log.warning("tenant %s: account %s deferred %.0fs: %s", ctx.name, account, delay, exc)


def guarded(
    ctx: TenantView, account: str, report: ActionReport, action: Callable[[], object]
) -> bool:
    """Run one account's Graph action; a failure defers or records it, never stops the rest."""
    try:
        action()
    except FenceLost:
        raise  # this clock no longer leads: nothing more of this round may be written
    except BridgeError as exc:
        if exc.transient:
            _defer(ctx, account, exc, report)
        else:
            # A permanent refusal (403, sign-in needed...) is retried next round, not faster.
            report.failed[account] = str(exc)
            log.warning("tenant %s: account %s failed: %s", ctx.name, account, exc)
        return False
    sub_state.clear_backoff(ctx.redis, ctx.name, account, ctx.fence)
    return True


# ---- the reconcile round -------------------------------------------------------------------------


def reconcile(ctx: TenantView) -> ActionReport:
    """Bring the tenant's subscriptions to the plan; renew what is due; record who is polled."""
    report = ActionReport(ctx.name)
    records = sub_state.load(ctx.redis, ctx.name)
    if not ctx.tenant.enabled:
        for record in records.values():
            guarded(ctx, record.account, report, partial(delete, ctx, record, report))
        _write_status(ctx, report, {}, [], sub_state.load(ctx.redis, ctx.name))
        return report

    users = links.linked_graph_ids(ctx.redis, ctx.name)
    configured = {a.strip().lower() for a in ctx.tenant.service_accounts}
    healthy = [a for a in ctx.auth.healthy_accounts() if a in configured]
    current = {a: r.user_ids for a, r in records.items()}
    plan = planner.plan(users, healthy, current)

    # Accounts that lost their health or were removed: try to delete (their token may no
    # longer work; then Graph ends the subscription within the hour anyway).
    for account in plan.dropped_accounts:
        dropped = records.pop(account)
        if not guarded(ctx, account, report, partial(delete, ctx, dropped, report)):
            sub_state.forget(ctx.redis, dropped, ctx.fence)
    now = ctx.now()
    owed = sub_state.owed_renewals(ctx.redis, ctx.name)
    for account, chunk in plan.chunks.items():
        if sub_state.backoff_until(ctx.redis, ctx.name, account) > now:
            report.deferred.setdefault(account, "backing off")
            continue
        guarded(ctx, account, report,
                partial(_converge, ctx, account, chunk, records.get(account), report,
                        owed=account in owed))  # fmt: skip
    held = sub_state.load(ctx.redis, ctx.name)  # as the round left them
    _write_status(ctx, report, plan.chunks, list(plan.polled), held)
    return report


def _converge(
    ctx: TenantView,
    account: str,
    chunk: tuple[str, ...],
    record: SubscriptionRecord | None,
    report: ActionReport,
    *,
    owed: bool = False,
) -> None:
    if record is not None and set(record.user_ids) != set(chunk):
        delete(ctx, record, report)  # the resource cannot be PATCHed
        record = None
    if record is None:
        if chunk:
            create(ctx, account, chunk, report)
        return
    if owed or record.expires_at - ctx.now() <= RENEW_WITHIN_SECONDS:
        renew(ctx, record, report)


def renew_owed(ctx: TenantView) -> ActionReport:
    """Try again each renewal owed whose back-off is over, until its subscription expires.

    A renewal owed for a subscription that is gone, replaced or expired is settled: the
    reconcile creates a new one.
    """
    report = ActionReport(ctx.name)
    owed = sub_state.owed_renewals(ctx.redis, ctx.name)
    if not owed:
        return report
    records = sub_state.load(ctx.redis, ctx.name)
    now = ctx.now()
    for account, debt in owed.items():
        record = records.get(account)
        if record is None or record.subscription_id != debt.subscription_id or now >= debt.until:
            sub_state.settle_renewal(ctx.redis, ctx.name, account, ctx.fence)
            continue
        _renew_unless_backing_off(ctx, account, record, report, now)
    return report


def _renew_unless_backing_off(
    ctx: TenantView, account: str, record: SubscriptionRecord, report: ActionReport, now: float
) -> None:
    if sub_state.backoff_until(ctx.redis, ctx.name, account) > now:
        report.deferred[account] = "backing off"
    else:
        guarded(ctx, account, report, partial(renew, ctx, record, report))


def renew_expiring(ctx: TenantView) -> ActionReport:
    """Only renewals (and 404 recreations): the `renew` command, for cron-driven sites."""
    report = ActionReport(ctx.name)
    now = ctx.now()
    for account, record in sub_state.load(ctx.redis, ctx.name).items():
        if record.expires_at - now > RENEW_WITHIN_SECONDS:
            continue
        _renew_unless_backing_off(ctx, account, record, report, now)
    return report


def _write_status(
    ctx: TenantView,
    report: ActionReport,
    chunks: Mapping[str, tuple[str, ...]],
    polled: list[str],
    records: dict[str, SubscriptionRecord],
) -> None:
    now = ctx.now()
    # Users whose subscription is not live (deferred, failed) are polled until it is.
    uncovered = [
        uid
        for account, chunk in chunks.items()
        if account not in records or records[account].expires_at <= now
        for uid in chunk
    ]
    polled = sorted(set(polled) | set(uncovered))
    report.polled = len(polled)
    report.latency_bound = polling.latency_bound(len(polled)) if polled else None
    in_use = {r.certificate_id for r in records.values() if r.certificate_id}
    cert_state.prune(ctx.redis, ctx.name, in_use, now)
    status = ReconcileStatus(
        reconciled_at=now,
        accounts={a: HeldSubscription.from_record(r) for a, r in sorted(records.items())},
        subscribed=sum(len(r.user_ids) for r in records.values()),
        polled=len(polled),
        polling_latency_bound=report.latency_bound,
        deferred=report.deferred,
        failed=report.failed,
    )
    sub_state.write_status(ctx.redis, ctx.name, status, polled, ctx.fence)
