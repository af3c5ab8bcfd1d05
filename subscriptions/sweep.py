"""The resync sweep: read every linked user's presence with the app-only token, feed changes on.

Graph never says when a subscription silently died, so every few minutes (and after any gap:
start-up, a lifecycle `missed`, a recreated subscription) the clock reads all presences with
`getPresencesByUserId` and hands those that differ from the last applied one to the presence
pipeline, by RQ job path (this package never imports the workers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from core.graph import GraphClient
from core.queue import enqueue_presences
from core.state import links
from core.state import presence as presence_state
from core.state import subscriptions as sub_state
from core.state.coordination import Fence
from subscriptions import planner

log = logging.getLogger(__name__)

# The share of Graph's 1,500 presence reads per 30 s (per app and tenant) the clock may use;
# the workers' reads after basic notifications need the rest.
BUDGET_SHARE = 0.5

Enqueue = Callable[[Redis, str, list[dict[str, Any]]], None]


class CallBudget:
    """At most `calls` Graph calls in any `per` seconds (a sliding window); blocks until allowed."""

    def __init__(
        self,
        calls: int = int(planner.PRESENCE_CALLS_PER_30S * BUDGET_SHARE),
        per: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1 or per <= 0:
            raise ValueError("a budget needs at least one call per positive period")
        self.calls, self.per = calls, per
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.per:
                    self._sent.popleft()
                if len(self._sent) < self.calls:
                    self._sent.append(now)
                    return
                wait = self.per - (now - self._sent[0])
            self._sleep(wait)


@dataclass(frozen=True)
class SweepReport:
    tenant: str
    read: int
    changed: int
    calls: int

    def summary(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "read": self.read, "changed": self.changed,
                "calls": self.calls}  # fmt: skip


def read_presences(
    client: GraphClient, user_ids: Sequence[str], budget: CallBudget, observed_at: float
) -> tuple[list[dict[str, Any]], int]:
    """Every presence of these users (650 ids a call, within the budget), stamped `observedAt`."""
    presences: list[dict[str, Any]] = []
    batches = planner.polling_batches(user_ids)
    for batch in batches:
        budget.take()
        for presence in client.get_presences_by_user_id(batch):
            presences.append({**presence, "observedAt": observed_at})
    return presences, len(batches)


def changed_presences(
    redis: Redis, tenant: str, presences: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Those that differ from the last presence the pipeline applied (or were never applied)."""
    if not presences:
        return []
    ids = [str(p.get("id")) for p in presences]
    out = []
    for presence, seen in zip(presences, presence_state.read_last(redis, tenant, ids), strict=True):
        if seen is None or (presence.get("availability"), presence.get("activity")) != (
            seen.availability, seen.activity,
        ):  # fmt: skip
            out.append(presence)
    return out


def feed(
    redis: Redis,
    tenant: str,
    client: GraphClient,
    user_ids: Sequence[str],
    budget: CallBudget,
    now: float,
    enqueue: Enqueue = enqueue_presences,
) -> SweepReport:
    """Read these users' presences and enqueue the changed ones; shared with polling."""
    presences, calls = read_presences(client, user_ids, budget, now)
    changed = changed_presences(redis, tenant, presences)
    if changed:
        enqueue(redis, tenant, changed)
    return SweepReport(tenant, len(presences), len(changed), calls)


def sweep(
    redis: Redis,
    tenant: str,
    client: GraphClient,
    budget: CallBudget,
    now: float | None = None,
    enqueue: Enqueue = enqueue_presences,
    *,
    fence: Fence | None = None,
) -> SweepReport:
    """Resync every linked user of the tenant."""
    now = time.time() if now is None else now
    users = links.linked_graph_ids(redis, tenant)
    report = feed(redis, tenant, client, users, budget, now, enqueue)
    sub_state.clear_sweep_request(redis, tenant, fence)
    log.info("tenant %s: sweep read %d, %d changed", tenant, report.read, report.changed)
    return report
