"""Apply desired profiles through the tenant's adapter; retry the transient, dead-letter the rest.

Safe to repeat: a user is applied only while its desired version is ahead of the applied
one, and the adapter is always handed the latest desired record, never a stale one. A PBX
that is away or overloaded as a whole is left alone by every job while its shared back-off
lasts (`core.state.backoff`): its users stay pending (`Outcome.deferred`), never dead.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from redis import Redis

from core.errors import PbxError
from core.queue import enqueue_deliver
from core.state import backoff, delivery
from core.state.backoff import Backoff
from core.state.delivery import Desired
from workers.pbx.base import BatchApply, PbxAdapter, ProfileChange

log = logging.getLogger("workers.delivery")

# What a PBX answers when it is overloaded or away as a whole, not about one user's write.
PBX_WIDE_STATUSES = frozenset({429, 502, 503, 504})


def is_pbx_wide(exc: PbxError) -> bool:
    """The PBX as a whole throttles or cannot be reached (no status): every job backs off."""
    return exc.transient and (exc.status is None or exc.status in PBX_WIDE_STATUSES)


class PbxTurn:
    """One job's turn at the PBX under its shared back-off: whether to call, and the verdict.

    While the PBX backs off, `go` is False. After its time, one job's turn is the probe: the
    first answer (`answered`) clears the back-off for everyone, a PBX-wide failure (`away`)
    grows it; `close` lets the next job probe when this one never got a verdict.
    """

    def __init__(self, shared: Backoff) -> None:
        self.shared = shared
        gate = shared.gate()
        self.go = gate.go
        self.until = gate.until
        self._probing = gate.probe
        self.recovered = False  # this turn's probe cleared the back-off

    def answered(self) -> None:
        if self._probing:
            self._probing = False
            self.recovered = self.shared.succeeded()
            log.info("pbx answers again", extra={"tenant": self.shared.tenant})

    def away(self, exc: PbxError) -> float:
        """Record the PBX-wide failure; when the PBX may be called again."""
        self._probing = False  # the failure's record releases the lease
        self.go = False
        self.until = self.shared.failed(exc.status, exc.retry_after, str(exc))
        log.warning(
            "pbx backing off",
            extra={"tenant": self.shared.tenant, "until": self.until, "status": exc.status},
        )
        return self.until

    def close(self) -> None:
        if self._probing:
            self._probing = False
            self.shared.release()


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    transient: dict[str, str] = field(default_factory=dict)  # user -> reason
    dead: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # the longest wait a PBX asked for (429 / 503)
    # Not tried, or the PBX as a whole failed them: it backs off until `resume_at`; pending.
    deferred: list[str] = field(default_factory=list)
    resume_at: float | None = None
    recovered: bool = False  # this delivery's probe found the PBX back: resume the others


def deliver(redis: Redis, tenant: str, adapter: PbxAdapter, users: list[str]) -> Outcome:
    outcome = Outcome()
    # The callers chose the users (fresh versions, pending ones, a replay): only versions count.
    due = delivery.behind(redis, tenant, sorted(set(users)))
    if not due:
        return outcome
    turn = PbxTurn(backoff.pbx(redis, tenant))
    try:
        done = _apply(redis, tenant, adapter, due, turn, outcome) if turn.go else []
    finally:
        turn.close()
    if not turn.go:
        tried = {d.user for d in done} | outcome.transient.keys() | outcome.dead.keys()
        outcome.deferred = [d.user for d in due if d.user not in tried]
        outcome.resume_at = turn.until
    outcome.recovered = turn.recovered
    delivery.mark_applied(redis, tenant, done, {"adapter": adapter.name})
    outcome.applied = [d.user for d in done]
    return outcome


def resume_later(redis: Redis, tenant: str, outcome: Outcome) -> None:
    """Users deferred while the PBX backs off stay pending: one delivery of every pending
    user is scheduled for its time, however many jobs deferred theirs; a probe that found
    the PBX back delivers them now."""
    if outcome.recovered:
        enqueue_deliver(redis, tenant)
        return
    at = outcome.resume_at
    if outcome.deferred and at is not None and backoff.pbx(redis, tenant).claim_resume(at):
        # RQ's scheduler keeps whole seconds: the next one after `at`, so it never runs early
        # (a job that ran early would find its own claim and schedule nothing).
        enqueue_deliver(redis, tenant, retry_after=max(math.ceil(at) + 0.5 - time.time(), 0.0))


def _apply(
    redis: Redis,
    tenant: str,
    adapter: PbxAdapter,
    due: list[Desired],
    turn: PbxTurn,
    outcome: Outcome,
) -> list[Desired]:
    """Apply `due` in order, until the PBX as a whole fails: the rest is not tried."""
    if isinstance(adapter, BatchApply):
        try:
            adapter.apply_many([_change(d) for d in due])
        except PbxError as exc:
            if is_pbx_wide(exc):
                turn.away(exc)
            else:
                turn.answered()
                _fail(redis, tenant, due, exc, outcome)
            return []
        turn.answered()
        return due
    done: list[Desired] = []
    for d in due:
        try:
            adapter.apply_profile(_change(d))
        except PbxError as exc:
            if is_pbx_wide(exc):
                turn.away(exc)
                break
            turn.answered()
            _fail(redis, tenant, [d], exc, outcome)
            continue
        turn.answered()
        done.append(d)
    return done


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
