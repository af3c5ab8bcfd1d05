"""The call-state source kinds by name, and the interface the listener process runs them by."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from core.queue import ProfileReport
from core.settings import TenantSettings
from workers.callstate.ami import AmiCallSource
from workers.callstate.profile_watch import ProfileWatch
from workers.pbx.asterisk import AsteriskAdapter

Emit = Callable[[dict[str, Any]], None]
Report = Callable[[list[ProfileReport]], None]


class CallSource(Protocol):
    """A long-lived listener that hands `call_started` / `call_ended` items to its emit."""

    counts: Counter[str]  # connects, disconnects, resyncs, emitted, emit_failures, ...
    connected: bool

    def restore(self, calls: Iterable[tuple[str, str, float]]) -> None:
        """Calls reported before it ran (user, call id, since): its first resync judges them."""

    def active_calls(self) -> int: ...

    def flush(self) -> None:
        """Hand over again what emit refused before (Redis was away), in order."""

    async def run(self) -> None:
        """Listen until stop(): reconnect with backoff, resync on every (re)connect."""

    def stop(self) -> None: ...


def build_source(tenant: TenantSettings, emit: Emit, report: Report | None = None) -> CallSource:
    """The tenant's source, mapping channels to PBX users through `pbx_users`; with the
    `asterisk` adapter it also hands the users' own DND/presence changes to `report`."""
    callstate = tenant.pbx.callstate
    if callstate is None:
        raise ValueError(f"tenant {tenant.name} has no [tenants.pbx.callstate]")
    watch = None
    if report is not None and tenant.pbx.adapter == "asterisk":
        # Never connected: it lends its rules (extensions, device states, profile targets).
        rules = AsteriskAdapter(tenant.pbx.asterisk_options, tenant.pbx.secret,
                                tenant.pbx_extensions())  # fmt: skip
        watch = ProfileWatch(rules, [u.username for u in tenant.pbx_users])
    return AmiCallSource(callstate.options, callstate.secret, tenant.users_by_extension(), emit,
                         profiles=watch, report=report)  # fmt: skip
