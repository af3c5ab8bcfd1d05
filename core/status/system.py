"""What an operator sees of the whole bridge: accounts, subscriptions, users, queues, errors.

Read-only and cheap: Redis and the settings, never Graph or a PBX, so the CLI's `status`,
`users show` and the admin page can call it as often as they like. Plain dataclasses;
`as_json` turns any of them into JSON-ready values. One user's view is in `core.status.user`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from core.queue import QUEUES, queue
from core.settings import Settings, TenantSettings
from core.state import accounts, backoff, coordination, delivery, directory, intake, links
from core.state import subscriptions as sub_state
from core.state.coordination import Process
from core.state.subscriptions import ReconcileStatus

# Refresh tokens lapse after 90 days without use (core.graph_tokens refreshes idle ones sooner).
REFRESH_TOKEN_DAYS = 90
# The clock renews 20 minutes before expiry: one with less than 10 left missed two renewals.
EXPIRING_SECONDS = 10 * 60.0
RECENT_FAILED_JOBS = 20


@dataclass(frozen=True)
class AccountView:
    account: str
    status: str  # healthy, needs_sign_in, not_signed_in
    reason: str | None
    signed_in_at: float | None
    last_refresh: float | None
    token_cached: bool
    refresh_token_expires_at: float | None  # the latest it lapses if never used again
    subscription_id: str | None


@dataclass(frozen=True)
class SubscriptionView:
    subscription_id: str
    account: str
    users: int
    expires_at: float
    renewed_at: float
    seconds_left: float
    state: str  # live, expiring, expired


@dataclass(frozen=True)
class UsersView:
    directory_synced_at: float | None
    graph_users: int
    pbx_users: int
    linked: int  # PBX users that follow a Teams user
    unlinked_graph: int
    unlinked_pbx: int
    conflicting: int
    disabled: int
    subscribed: int
    polled: int
    polling_latency_bound: float | None
    conflicts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetterView:
    user: str
    profile: str
    version: int
    reason: str
    at: float


@dataclass(frozen=True)
class Problem:
    at: float | None
    tenant: str | None
    source: str  # account, subscription, repair, delivery, backoff, job
    subject: str
    message: str


@dataclass(frozen=True)
class QueueView:
    name: str
    queued: int
    started: int
    scheduled: int
    failed: int


@dataclass(frozen=True)
class TenantStatus:
    name: str
    enabled: bool
    adapter: str
    accounts: list[AccountView]
    subscriptions: list[SubscriptionView]
    users: UsersView
    pending_deliveries: int
    dead_letters: list[DeadLetterView]
    problems: list[Problem]


@dataclass(frozen=True)
class BridgeStatus:
    generated_at: float
    worker_alive: bool
    clock_alive: bool
    intake_length: int
    intake_pending: int
    queues: list[QueueView]
    tenants: list[TenantStatus]
    problems: list[Problem]  # failed jobs and everything the tenants list


def as_json(value: Any) -> Any:
    """Dataclasses as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    return value


# ---- per tenant ---------------------------------------------------------------------------


def subscriptions(redis: Redis, tenant: str, now: float) -> list[SubscriptionView]:
    """The tenant's recorded subscriptions, soonest expiry first."""
    views = []
    for record in sub_state.tenant_records(redis, tenant):
        if not record.managed:
            continue  # a bare registration: no account holds it, the clock does not renew it
        left = record.expires_at - now
        state = "expired" if left <= 0 else "expiring" if left < EXPIRING_SECONDS else "live"
        views.append(SubscriptionView(
            record.subscription_id, record.account, len(record.user_ids), record.expires_at,
            record.renewed_at, round(left, 1), state,
        ))  # fmt: skip
    return sorted(views, key=lambda v: (v.expires_at, v.subscription_id))


def account_views(
    redis: Redis, tenant: TenantSettings, subs: Iterable[SubscriptionView]
) -> list[AccountView]:
    held = {s.account: s.subscription_id for s in subs}
    health = accounts.account_health(redis, tenant.name, tenant.service_accounts)
    cached = accounts.token_caches_present(redis, tenant.name, [h.account for h in health])
    return [
        AccountView(
            h.account, h.status.value, h.reason, h.signed_in_at, h.last_refresh, c,
            h.last_refresh + REFRESH_TOKEN_DAYS * 86400 if h.last_refresh else None,
            held.get(h.account),
        )
        for h, c in zip(health, cached, strict=True)
    ]  # fmt: skip


def users_view(redis: Redis, tenant: str) -> UsersView:
    pipe = redis.pipeline(transaction=False)
    directory.queue_status(pipe, tenant)
    sub_state.queue_status(pipe, tenant)
    links.queue_count(pipe, tenant)
    directory_raw, subs_raw, linked_graph = pipe.execute()
    synced = directory.status_from(directory_raw)
    sync = synced or directory.SyncReport()
    subs = sub_state.status_from_raw(subs_raw) or ReconcileStatus()
    return UsersView(
        directory_synced_at=synced.synced_at if synced else None,
        graph_users=sync.graph_users,
        pbx_users=sync.pbx_users,
        linked=sync.linked_pbx if synced else int(linked_graph),
        unlinked_graph=sync.unlinked_graph,
        unlinked_pbx=sync.unlinked_pbx,
        conflicting=len(sync.conflicts),
        disabled=sync.disabled,
        subscribed=subs.subscribed,
        polled=subs.polled,
        polling_latency_bound=subs.polling_latency_bound,
        conflicts=sync.status()["conflicts"],
    )


def dead_letters(redis: Redis, tenant: str) -> list[DeadLetterView]:
    """Oldest first."""
    return [DeadLetterView(d.user, d.profile, d.version, d.reason, d.at)
            for d in delivery.dead_letters(redis, tenant)]  # fmt: skip


def pending_deliveries(redis: Redis, tenant: str) -> int:
    """Users whose delivery is pending (`core.state.delivery.Delivery.pending`)."""
    return delivery.pending_count(redis, tenant)


def _account_problem(
    tenant: str, view: AccountView, repair: coordination.Repair | None
) -> Problem | None:
    """What a person must do for the account, if anything; a lost token cache says so."""
    lost = repair is not None and view.account in repair.needs_sign_in
    if not view.token_cached and lost:
        why = "needs sign-in: its tokens were lost when Redis came back empty"
        return Problem(repair.since if repair else None, tenant, "account", view.account, why)
    if view.status == accounts.AccountStatus.NOT_SIGNED_IN.value:
        return Problem(None, tenant, "account", view.account, "never signed in")
    if view.status != accounts.AccountStatus.HEALTHY.value:
        return Problem(None, tenant, "account", view.account, view.reason or view.status)
    if not view.token_cached:
        return Problem(None, tenant, "account", view.account, "needs sign-in: no tokens stored")
    return None


def _repair_problem(tenant: str, repair: coordination.Repair | None) -> Problem | None:
    if repair is None or repair.done:
        return None
    waiting = {
        coordination.RepairStage.DIRECTORY: "the directory import and links (a worker job)",
        coordination.RepairStage.SUBSCRIPTIONS: "the subscriptions",
        coordination.RepairStage.SWEEP: "the resync sweep",
    }[repair.stage]
    why = f"Redis came back empty; the clock is rebuilding: waiting for {waiting}"
    return Problem(repair.since, tenant, "repair", tenant, why)


def _tenant_problems(
    redis: Redis,
    tenant: str,
    app_id: str,
    accounts_: list[AccountView],
    subs: list[SubscriptionView],
    dead: list[DeadLetterView],
    repair: coordination.Repair | None = None,
) -> list[Problem]:
    found = [_repair_problem(tenant, repair)]
    found += [_account_problem(tenant, a, repair) for a in accounts_]
    problems = [p for p in found if p is not None]
    problems += [
        Problem(s.expires_at, tenant, "subscription", s.subscription_id,
                f"{s.state}: {s.seconds_left:.0f} s left (account {s.account})")
        for s in subs if s.state != "live"
    ]  # fmt: skip
    for account, entry in sub_state.backoffs(redis, tenant).items():
        why = (f"throttled by Graph until {entry.until:.0f}" if entry.throttled
               else f"backing off after {entry.failures} failure(s)")  # fmt: skip
        problems.append(Problem(None, tenant, "subscription", account, f"{why}: {entry.reason}"))
    problems += [
        Problem(d.at, tenant, "delivery", d.user, f"{d.profile} (v{d.version}): {d.reason}")
        for d in dead
    ]
    return problems + backoff_problems(redis, tenant, app_id)


def backoff_problems(redis: Redis, tenant: str, app_id: str) -> list[Problem]:
    """The tenant's PBX or Graph app backing off: "PBX backing off until T (503)"."""
    peers = [backoff.PBX, backoff.graph_peer(app_id)]
    return [
        Problem(s.since, tenant, "backoff", s.what, f"backing off until {_utc(s.until)} "
                f"({s.status or 'unreachable'}) after {s.failures} failure(s): {s.reason}")
        for s in backoff.backing_off(redis, tenant, peers)
    ]  # fmt: skip


def _utc(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def tenant_status(redis: Redis, tenant: TenantSettings, now: float | None = None) -> TenantStatus:
    now = time.time() if now is None else now
    subs = subscriptions(redis, tenant.name, now)
    accounts_ = account_views(redis, tenant, subs)
    dead = dead_letters(redis, tenant.name)
    return TenantStatus(
        name=tenant.name,
        enabled=tenant.enabled,
        adapter=tenant.pbx.adapter,
        accounts=accounts_,
        subscriptions=subs,
        users=users_view(redis, tenant.name),
        pending_deliveries=pending_deliveries(redis, tenant.name),
        dead_letters=dead,
        problems=_tenant_problems(
            redis,
            tenant.name,
            tenant.client_id,
            accounts_,
            subs,
            dead,
            coordination.read_repair(redis, tenant.name),
        ),  # fmt: skip
    )


# ---- the whole bridge ---------------------------------------------------------------------


def queue_views(redis: Redis) -> list[QueueView]:
    views = []
    for name in QUEUES:
        q = queue(redis, name)
        views.append(QueueView(
            name, q.count, q.started_job_registry.count, q.scheduled_job_registry.count,
            q.failed_job_registry.count,
        ))  # fmt: skip
    return views


def failed_jobs(redis: Redis, limit: int = RECENT_FAILED_JOBS) -> list[Problem]:
    """The newest jobs in RQ's failed registries, with the last line of their error."""
    problems = []
    for name in QUEUES:
        registry = queue(redis, name).failed_job_registry
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer):
            if job is None:
                continue
            result = job.latest_result()
            text = (result.exc_string or "").strip() if result is not None else ""
            args = job.args or []
            tenant = args[0] if args and isinstance(args[0], str) else None
            ended = job.ended_at.timestamp() if job.ended_at else None
            last_line = text.splitlines()[-1] if text else "failed"
            problems.append(Problem(ended, tenant, "job", f"{job.func_name} ({job.id})", last_line))
    problems.sort(key=lambda p: p.at or 0.0, reverse=True)
    return problems[:limit]


def bridge_status(
    redis: Redis, settings: Settings, tenant: str | None = None, now: float | None = None
) -> BridgeStatus:
    """Everything, for all tenants (or one)."""
    now = time.time() if now is None else now
    chosen = [t for t in settings.tenants if tenant is None or t.name == tenant]
    tenants = [tenant_status(redis, t, now) for t in chosen]
    jobs = [p for p in failed_jobs(redis) if tenant is None or p.tenant == tenant]
    problems = [p for t in tenants for p in t.problems] + jobs
    length, pending = intake.depth(redis)
    pipe = redis.pipeline(transaction=False)
    coordination.queue_alive(pipe, Process.WORKER)
    coordination.queue_alive(pipe, Process.CLOCK)
    worker, clock = pipe.execute()
    return BridgeStatus(
        generated_at=now,
        worker_alive=bool(worker),
        clock_alive=bool(clock),
        intake_length=length,
        intake_pending=pending,
        queues=queue_views(redis),
        tenants=tenants,
        problems=problems,
    )
