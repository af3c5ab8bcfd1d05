"""The call-state source kinds by name, and the interface the listener process runs them by."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from redis import Redis

from core.queue import ProfileReport
from core.settings import AmiCallState, TenantSettings
from core.state import calls
from workers.callstate.ami import AmiCallSource
from workers.callstate.blf import BlfCallSource
from workers.callstate.profile_watch import ProfileWatch
from workers.pbx.asterisk import AsteriskAdapter

Emit = Callable[[dict[str, Any]], None]
Report = Callable[[list[ProfileReport]], None]


class CallSource(Protocol):
    """A long-lived listener that hands `call_started` / `call_ended` items to its emit."""

    counts: Counter[str]  # connects, disconnects, resyncs, emitted, emit_failures, ...

    @property
    def connected(self) -> bool:
        """Talking to the PBX right now (logged in, or holding subscriptions)."""

    def restore(self, calls: Iterable[tuple[str, str, float]]) -> None:
        """Calls reported before it ran (user, call id, since): its first resync judges them."""

    def active_calls(self) -> int: ...

    def flush(self) -> None:
        """Hand over again what emit refused before (Redis was away), in order."""

    async def run(self) -> None:
        """Listen until stop(): reconnect with backoff, resync on every (re)connect."""

    def stop(self) -> None: ...


def build_source(
    tenant: TenantSettings, emit: Emit, report: Report | None = None, redis: Redis | None = None
) -> CallSource:
    """The tenant's source, mapping channels or extensions to PBX users through `pbx_users`.

    `ami` with the `asterisk` adapter also hands the users' own DND/presence changes to
    `report`. With `redis`, a `blf` source starts from the calls the bridge holds
    (`core.state.calls`), on top of what the listener restores from its own record.
    """
    callstate = tenant.pbx.callstate
    if callstate is None:
        raise ValueError(f"tenant {tenant.name} has no [tenants.pbx.callstate]")
    users = tenant.users_by_extension()
    if isinstance(callstate, AmiCallState):
        watch = None
        if report is not None and tenant.pbx.adapter == "asterisk":
            # Never connected: it lends its rules (extensions, device states, profile targets).
            rules = AsteriskAdapter(tenant.pbx.asterisk_options, tenant.pbx.secret,
                                    tenant.pbx_extensions())  # fmt: skip
            watch = ProfileWatch(rules, [u.username for u in tenant.pbx_users])
        return AmiCallSource(callstate.options, callstate.secret, users, emit,
                             profiles=watch, report=report)  # fmt: skip
    held = {} if redis is None else calls.read_all(redis, tenant.name)
    known = {user: record.call_ids for user, record in held.items()}
    return BlfCallSource(callstate.options, callstate.secret, users, emit, known_calls=known)
