"""The repair after Redis came back empty: directory, links, subscriptions, sweep, in that order.

Everything the bridge keeps lives in Redis, so an empty one (a restart without persistence, a
failover to an empty replica) loses the links, the subscription records and the tokens. The
clock notices it by the missing epoch (`core.state.coordination`) and rebuilds, per tenant,
what needs no person, each step on what the one before rebuilt:

1. directory and links: a full directory import, a worker job that writes the links in the
   MULTI of its status. Queued again if no status appears within two minutes.
2. subscriptions: the reconcile, on those links. Tokens lived in Redis too, so an account has
   none until a person signs it in again; its users are polled meanwhile (app-only).
3. sweep: every linked user's presence read once, for the changes lost with Redis (when
   Graph refuses, the sweep is owed and the owed-sweeps schedule pays it).

Before, the sweep ran first, found no links, and cleared the request. The intake stream's
consumer group is recreated at once, so the workers' forwarder reads again. The accounts
without tokens are recorded with the repair and listed on the status page; the clock
reconciles as soon as one is signed in again (`Clockwork.new_sign_ins`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from core.errors import BridgeError
from core.queue import enqueue_sync_directory
from core.state import accounts, coordination, directory, intake, links
from core.state import subscriptions as sub_state
from core.state.coordination import FenceLost, Repair, RepairStage
from subscriptions.actions import ActionReport
from subscriptions.sweep import SweepReport
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)

# A directory job that left no status by then failed or was lost: queue it again.
DIRECTORY_RETRY_SECONDS = 120.0
LINKS = "links"  # recorded as finished with the directory stage


def begin(ctx: TenantView, now: float) -> Repair:
    """Start the tenant's repair: queue the full directory import, note who needs a person."""
    intake.ensure_group(ctx.redis)  # the forwarder cannot read a stream without its group
    configured = sorted({accounts.normalize(a) for a in ctx.tenant.service_accounts})
    cached = accounts.token_caches_present(ctx.redis, ctx.name, configured)
    missing = tuple(a for a, present in zip(configured, cached, strict=True) if not present)
    enqueue_sync_directory(ctx.redis, ctx.name, full=True)
    repair = Repair(since=now, directory_asked_at=now, needs_sign_in=missing)
    coordination.write_repair(ctx.redis, ctx.name, repair, ctx.fence)
    log.warning("tenant %s: Redis came back empty; repairing (accounts to sign in again: %s)",
                ctx.name, ", ".join(missing) or "none")  # fmt: skip
    return repair


def _finish(repair: Repair, stage: RepairStage, nxt: RepairStage, now: float) -> Repair:
    return replace(repair, stage=nxt, finished=(*repair.finished, (stage.value, now)))


def advance(
    ctx: TenantView,
    repair: Repair,
    reconcile: Callable[[TenantView], ActionReport],
    sweep: Callable[[TenantView], SweepReport],
) -> Repair:
    """Take the repair as far as it can go now; each finished step is recorded at once."""
    now = ctx.now()
    if repair.stage is RepairStage.DIRECTORY:
        # Redis was empty when the repair began: any status was written since, with its links.
        if directory.read_status(ctx.redis, ctx.name) is None:
            if now - repair.directory_asked_at >= DIRECTORY_RETRY_SECONDS:
                enqueue_sync_directory(ctx.redis, ctx.name, full=True)
                repair = replace(repair, directory_asked_at=now)
                coordination.write_repair(ctx.redis, ctx.name, repair, ctx.fence)
            return repair
        # The job writes both in one MULTI: the links are done when the directory is.
        done = (*repair.finished, (RepairStage.DIRECTORY.value, now), (LINKS, now))
        repair = replace(repair, stage=RepairStage.SUBSCRIPTIONS, finished=done,
                         linked=links.count(ctx.redis, ctx.name))  # fmt: skip
        coordination.write_repair(ctx.redis, ctx.name, repair, ctx.fence)
    if repair.stage is RepairStage.SUBSCRIPTIONS:
        reconcile(ctx)
        repair = _finish(repair, RepairStage.SUBSCRIPTIONS, RepairStage.SWEEP, ctx.now())
        coordination.write_repair(ctx.redis, ctx.name, repair, ctx.fence)
    if repair.stage is RepairStage.SWEEP:
        try:
            swept: int | None = sweep(ctx).read
        except FenceLost:
            raise
        except BridgeError as exc:
            # Graph refused: the owed-sweeps schedule tries again at its own pace.
            log.warning("tenant %s: repair sweep failed, owed: %s", ctx.name, exc)
            sub_state.request_sweep(ctx.redis, ctx.name, ctx.fence)
            swept = None
        repair = replace(_finish(repair, RepairStage.SWEEP, RepairStage.DONE, ctx.now()),
                         swept=swept)  # fmt: skip
        coordination.write_repair(ctx.redis, ctx.name, repair, ctx.fence)
        log.info("tenant %s: repair done: %d linked, %s presences read", ctx.name,
                 repair.linked or 0, swept)  # fmt: skip
    return repair


def pending(ctx: TenantView) -> bool:
    """True while the tenant's repair has steps left (its schedules wait for it)."""
    repair = coordination.read_repair(ctx.redis, ctx.name)
    return repair is not None and not repair.done
