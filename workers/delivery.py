"""Apply desired profiles through the tenant's adapter; retry the transient, dead-letter the rest.

Safe to repeat: a user is applied only while its desired version is ahead of the applied
one, and the adapter is always handed the latest desired record, never a stale one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis import Redis

from core.errors import PbxError
from core.state import delivery
from core.state.delivery import Desired
from workers.pbx.base import BatchApply, PbxAdapter, ProfileChange

log = logging.getLogger("workers.delivery")


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    transient: dict[str, str] = field(default_factory=dict)  # user -> reason
    dead: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # the longest wait a PBX asked for (429 / 503)


def deliver(redis: Redis, tenant: str, adapter: PbxAdapter, users: list[str]) -> Outcome:
    outcome = Outcome()
    # The callers chose the users (fresh versions, pending ones, a replay): only versions count.
    due = delivery.behind(redis, tenant, sorted(set(users)))
    if not due:
        return outcome
    if isinstance(adapter, BatchApply):
        try:
            adapter.apply_many([_change(d) for d in due])
            done = due
        except PbxError as exc:
            done = []
            _fail(redis, tenant, due, exc, outcome)
    else:
        done = []
        for d in due:
            try:
                adapter.apply_profile(_change(d))
                done.append(d)
            except PbxError as exc:
                _fail(redis, tenant, [d], exc, outcome)
    delivery.mark_applied(redis, tenant, done, {"adapter": adapter.name})
    outcome.applied = [d.user for d in done]
    return outcome


def _fail(
    redis: Redis, tenant: str, failed: list[Desired], exc: PbxError, outcome: Outcome
) -> None:
    reason = str(exc)
    for d in failed:
        if exc.transient:
            outcome.transient[d.user] = reason
            if exc.retry_after is not None:
                outcome.retry_after = max(outcome.retry_after or 0.0, exc.retry_after)
        else:
            outcome.dead[d.user] = reason
            delivery.dead_letter(redis, tenant, d, reason)
    log.warning(
        "pbx apply failed",
        extra={"tenant": tenant, "users": len(failed), "transient": exc.transient},
    )


def _change(d: Desired) -> ProfileChange:
    return ProfileChange(d.user, d.profile, d.availability, d.activity, d.version)
