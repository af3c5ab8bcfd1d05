"""The clock's schedules: reconcile + renew, lifecycle drain, sweep, polling, directory delta.

Every action loops over the tenants and never lets one tenant's failure stop the others.
The same per-tenant actions back the one-shot commands (`presence-bridge clock ...`).
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
from subscriptions import lifecycle, polling
from subscriptions.actions import ActionReport
from subscriptions.clock import Schedule
from subscriptions.reconcile import reconcile, renew_expiring
from subscriptions.sweep import SweepReport, sweep
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)


LIFECYCLE_EVERY_SECONDS = 5.0
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
    _contexts: dict[str, TenantView] = field(default_factory=dict)

    def context(self, tenant: TenantSettings) -> TenantView:
        ctx = self._contexts.get(tenant.name)
        if ctx is None:
            ca = self.settings.process.ca_bundle
            ctx = TenantView(
                self.redis, tenant, self.auth.tenant(tenant.name), self.auth.cipher(),
                verify=str(ca) if ca else True, now=self.now,
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
            sub_state.request_sweep(self.redis, ctx.name)
        return report

    def renew(self, ctx: TenantView) -> ActionReport:
        return renew_expiring(ctx)

    def sweep(self, ctx: TenantView) -> SweepReport:
        return sweep(self.redis, ctx.name, ctx.graph(None), ctx.budget)

    def directory(self, tenant: str) -> str:
        return str(enqueue_sync_directory(self.redis, tenant).id)

    # ---- the schedules ---------------------------------------------------------------------

    def _each(
        self, what: str, action: Callable[[TenantView], object], *, enabled_only: bool = True
    ) -> None:
        for ctx in self.contexts(enabled_only=enabled_only):
            try:
                action(ctx)
            except BridgeError as exc:  # expected failures: logged, retried next time
                log.warning("%s failed for tenant %s: %s", what, ctx.name, exc)
            except Exception:
                log.exception("%s failed for tenant %s", what, ctx.name)

    def reconcile_all(self) -> None:
        # A missing epoch means Redis was restored from empty (or is new), which is a gap:
        # nothing says which notifications were lost, so a sweep is owed.
        if coordination.mark_epoch(self.redis, self.now()):
            for ctx in self.contexts():
                sub_state.request_sweep(self.redis, ctx.name)
        self._each("reconcile", self.reconcile, enabled_only=False)  # disabled: delete

    def lifecycle_all(self) -> None:
        self._each("lifecycle", lifecycle.drain)

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
            Schedule("lifecycle", LIFECYCLE_EVERY_SECONDS, self.lifecycle_all),
            Schedule("reconcile", every.reconcile_every, self.reconcile_all),
            Schedule("sweep", every.sweep_every, self.sweep_all),
            Schedule("owed-sweeps", OWED_SWEEP_EVERY_SECONDS, self.owed_sweeps),
            Schedule("polling", POLL_TICK_SECONDS, self.poll_all),
            Schedule("directory", every.directory_every, self.directory_all),
            Schedule("accounts", ACCOUNTS_EVERY_SECONDS, self.refresh_accounts),
            Schedule("pbx-reconcile", every.pbx_reconcile_every, self.pbx_reconcile_all),
        ]
