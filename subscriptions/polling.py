"""Polling of the users no subscription covers (beyond the accounts' capacity, or deferred).

Reads with the app-only token and `getPresencesByUserId` (650 ids a call) at the shortest
period the call budget allows; that period is the polled users' latency bound in status.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from core.graph import GraphClient
from core.queue import enqueue_presences
from core.state import subscriptions as sub_state
from subscriptions import planner
from subscriptions.sweep import (
    BUDGET_SHARE,
    CallBudget,
    Enqueue,
    SweepReport,
    feed,
)

# Even a few polled users are not read more often than this: it is a fallback, and every
# read spends the budget the sweep and the workers share.
MIN_INTERVAL_SECONDS = 15.0


def latency_bound(n_users: int) -> float:
    """Seconds between two reads of the same polled user."""
    return max(MIN_INTERVAL_SECONDS, planner.polling_interval(n_users, safety=BUDGET_SHARE))


class Poller:
    """Per tenant, when the next polling round is due (the clock asks every few seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}

    def due(self, tenant: str) -> bool:
        return self._clock() >= self._next.get(tenant, 0.0)

    def done(self, tenant: str, n_users: int) -> None:
        self._next[tenant] = self._clock() + latency_bound(n_users)


def poll(
    redis: Redis,
    tenant: str,
    client: GraphClient,
    budget: CallBudget,
    enqueue: Enqueue = enqueue_presences,
) -> SweepReport:
    """One round over the tenant's polled users; changed presences go to the pipeline."""
    users = sub_state.polled_users(redis, tenant)
    if not users:
        return SweepReport(tenant, 0, 0, 0)
    return feed(redis, tenant, client, users, budget, time.time(), enqueue)
