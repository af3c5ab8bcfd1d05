"""The clock's schedules: repair, reconcile + renew, lifecycle drain, sweep, polling, directory.

Every action loops over the tenants and never lets one tenant's failure stop the others; a
tenant under repair after an empty Redis (`subscriptions.repair`) is left to the repair until
it is done. Every write carries the clock's term of the leader lock (`lead`), so a clock that
lost the lock stops at its first write (`FenceLost`). The same per-tenant actions back the
one-shot commands (`presence-bridge clock ...`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from redis import Redis

from core.errors import BridgeError
from core.graph_tokens import GraphTokens
from core.queue import enqueue_maintain_pbx, enqueue_sync_directory
from core.settings import Settings, TenantSettings
from core.state import coordination
from core.state import subscriptions as sub_state
from core.state.coordination import Fence, FenceLost
from subscriptions import lifecycle, polling, repair
from subscriptions.actions import ActionReport
from subscriptions.clock import Schedule
from subscriptions.reconcile import reconcile, renew_expiring, renew_owed
from subscriptions.sweep import SweepReport, sweep
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)


LIFECYCLE_EVERY_SECONDS = 5.0
REPAIR_EVERY_SECONDS = 1.0  # cheap (one EXISTS, one GET a tenant); a repair waits on it
RENEWALS_EVERY_SECONDS = 5.0  # owed renewals, and accounts just signed in
OWED_SWEEP_EVERY_SECONDS = 10.0
POLL_TICK_SECONDS = 5.0
ACCOUNTS_EVERY_SECONDS = 3600.0


@dataclass
class Clockwork:
    """Per-tenant views kept across ticks (they hold Graph connections and the call budget)."""

    settings: Settings
    redis: Redis
    auth: GraphTokens
    now: Callable[[], float] = time.time
    poller: polling.Poller = field(default_factory=polling.Poller)
    fence: Fence | None = None  # the term of the leader lock the clock acts in (`lead`)
    _contexts: dict[str, TenantView] = field(default_factory=dict)
    # Per tenant, the healthy accounts without a subscription at the last look.
    _unsubscribed: dict[str, set[str]] = field(default_factory=dict)

    def lead(self, fence: Fence | None) -> None:
        """Act in this term of the leader lock from now on (each tick hands over the current)."""
        self.fence = fence
        for ctx in self._contexts.values():
            ctx.fence = fence

    def context(self, tenant: TenantSettings) -> TenantView:
        ctx = self._contexts.get(tenant.name)
        if ctx is None:
            ca = self.settings.process.ca_bundle
            ctx = TenantView(
                self.redis, tenant, self.auth.tenant(tenant.name), self.auth.cipher(),
                verify=str(ca) if ca else True, now=self.now, fence=self.fence,
            )  # fmt: skip
            self._contexts[tenant.name] = ctx
        return ctx

    def contexts(self, *, enabled_only: bool = True) -> Iterator[TenantView]:
        for tenant in self.settings.tenants:
            if tenant.enabled or not enabled_only:
                yield self.context(tenant)

    def close(self) -> None:
        for ctx in self._contexts.values():
            ctx.close()
        self._contexts.clear()

    # ---- actions, one tenant each --------------------------------------------------------

    def reconcile(self, ctx: TenantView) -> ActionReport:
        report = reconcile(ctx)
        if report.gap:
            # Recreated or new: changes may have been missed.
            sub_state.request_sweep(self.redis, ctx.name, ctx.fence)
        return report

    def renew(self, ctx: TenantView) -> ActionReport:
        return renew_expiring(ctx)

    def sweep(self, ctx: TenantView) -> SweepReport:
        return sweep(self.redis, ctx.name, ctx.graph(None), ctx.budget, fence=ctx.fence)

    def new_sign_ins(self, ctx: TenantView) -> ActionReport | None:
        """Reconcile at once when an account was signed in that holds no subscription yet.

        A person who signs an account in (after an empty Redis, or a lapsed token) then sees
        real-time updates within seconds, not at the next reconcile round.
        """
        held = sub_state.load(self.redis, ctx.name)
        unsubscribed = {a for a in ctx.auth.healthy_accounts() if a not in held}
        before = self._unsubscribed.get(ctx.name, set())
        self._unsubscribed[ctx.name] = unsubscribed
        if not unsubscribed - before:
            return None
        return self.reconcile(ctx)

    def directory(self, tenant: str) -> str:
        return str(enqueue_sync_directory(self.redis, tenant).id)

    # ---- the schedules ---------------------------------------------------------------------

    def _each(
        self,
        what: str,
        action: Callable[[TenantView], object],
        *,
        enabled_only: bool = True,
        repairing: bool = False,
    ) -> None:
        """`action` for each tenant; tenants under repair only when `repairing`."""
        for ctx in self.contexts(enabled_only=enabled_only):
            try:
                if not repairing and repair.pending(ctx):
                    continue
                action(ctx)
            except FenceLost:
                raise  # not the leader any more: the whole round stops
            except BridgeError as exc:  # expected failures: logged, retried next time
                log.warning("%s failed for tenant %s: %s", what, ctx.name, exc)
            except Exception:
                log.exception("%s failed for tenant %s", what, ctx.name)

    def repair_all(self) -> None:
        """Start the repair when Redis is new or came back empty; take each one on."""
        if coordination.epoch_missing(self.redis):
            now = self.now()
            # Every tenant's repair first, then the epoch: if any could not begin (or the
            # clock dies in between), the next tick begins them all again.
            for ctx in self.contexts():
                repair.begin(ctx, now)
            coordination.mark_epoch(self.redis, now, self.fence)

        def advance(ctx: TenantView) -> None:
            found = coordination.read_repair(self.redis, ctx.name)
            if found is not None and not found.done:
                repair.advance(ctx, found, self.reconcile, self.sweep)

        self._each("repair", advance, repairing=True)

    def reconcile_all(self) -> None:
        self._each("reconcile", self.reconcile, enabled_only=False)  # disabled: delete

    def lifecycle_all(self) -> None:
        self._each("lifecycle", lifecycle.drain)

    def renewals_all(self) -> None:
        def renewals(ctx: TenantView) -> None:
            renew_owed(ctx)
            self.new_sign_ins(ctx)

        self._each("renewals", renewals)

    def sweep_all(self) -> None:
        self._each("sweep", self.sweep)

    def owed_sweeps(self) -> None:
        def owed(ctx: TenantView) -> None:
            if sub_state.sweep_owed(self.redis, ctx.name):
                self.sweep(ctx)

        self._each("sweep", owed)

    def poll_all(self) -> None:
        def poll(ctx: TenantView) -> None:
            if self.poller.due(ctx.name):
                report = polling.poll(self.redis, ctx.name, ctx.graph(None), ctx.budget)
                self.poller.done(ctx.name, report.read)

        self._each("polling", poll)

    def directory_all(self) -> None:
        self._each("directory", lambda ctx: self.directory(ctx.name))

    def refresh_accounts(self) -> None:
        self.auth.refresh_stale_accounts()

    def pbx_reconcile_all(self) -> None:
        """Keep PBX publications alive and re-apply desired state not applied yet."""
        for tenant in self.settings.tenants:
            if tenant.enabled:
                enqueue_maintain_pbx(self.redis, tenant.name)

    def schedules(self) -> list[Schedule]:
        """In the order they run within a tick; all are due at start-up (the first sweep too)."""
        every = self.settings.process
        return [
            Schedule("repair", REPAIR_EVERY_SECONDS, self.repair_all),
            Schedule("lifecycle", LIFECYCLE_EVERY_SECONDS, self.lifecycle_all),
            Schedule("renewals", RENEWALS_EVERY_SECONDS, self.renewals_all),
            Schedule("reconcile", every.reconcile_every, self.reconcile_all),
            Schedule("sweep", every.sweep_every, self.sweep_all),
            Schedule("owed-sweeps", OWED_SWEEP_EVERY_SECONDS, self.owed_sweeps),
            Schedule("polling", POLL_TICK_SECONDS, self.poll_all),
            Schedule("directory", every.directory_every, self.directory_all),
            Schedule("accounts", ACCOUNTS_EVERY_SECONDS, self.refresh_accounts),
            Schedule("pbx-reconcile", every.pbx_reconcile_every, self.pbx_reconcile_all),
        ]
