"""Desired subscription state: which service account subscribes to which users, who is polled.

Pure functions, no I/O. Graph allows one presence subscription per (signed-in user, app) and
at most 650 ids in it, so each healthy service account holds one chunk of at most 650 users;
users beyond the accounts' total capacity are polled with the app-only token.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_IDS_PER_SUBSCRIPTION = 650  # Graph: 650 ids per presence subscription
MAX_IDS_PER_PRESENCE_CALL = 650  # Graph: getPresencesByUserId takes at most 650 ids
PRESENCE_CALLS_PER_30S = 1500  # Graph: getPresencesByUserId, per app per tenant


@dataclass(frozen=True)
class Plan:
    """Per healthy account its chunk (sorted ids, maybe empty), the polled rest, what changed."""

    chunks: Mapping[str, tuple[str, ...]]
    polled: tuple[str, ...]
    # A presence subscription's resource cannot be PATCHed, so each of these means
    # delete + recreate (or create, or just delete when the chunk became empty).
    changed_accounts: tuple[str, ...]
    # Accounts in `current` that are no longer healthy: their subscriptions are to go.
    dropped_accounts: tuple[str, ...]

    @property
    def subscribed(self) -> int:
        return sum(len(ids) for ids in self.chunks.values())


def _rebalance(
    chunks: dict[str, list[str]], order: Sequence[str], capacity: int, spread: int
) -> None:
    """Even the loads out, in place, until no two accounts differ by more than `spread`.

    Pairwise: the fullest account hands half the difference to the emptiest. Each step
    recreates two subscriptions, so a new account costs about two recreations, where
    evening everyone out would recreate every subscription of the tenant.
    """
    if len(order) < 2:
        return
    limit = max(spread, 1)  # loads can always differ by one
    rank = {a: i for i, a in enumerate(order)}
    while True:
        # Ties go to the earlier account, so the plan is deterministic.
        donor = max(order, key=lambda a: (len(chunks[a]), -rank[a]))
        taker = min(order, key=lambda a: (len(chunks[a]), rank[a]))
        gap = len(chunks[donor]) - len(chunks[taker])
        if gap <= limit:
            return
        count = min(gap // 2, capacity - len(chunks[taker]))
        chunks[donor].sort()
        chunks[taker].extend(chunks[donor][-count:])
        del chunks[donor][-count:]


def plan(
    user_ids: Sequence[str],
    accounts: Sequence[str],
    current: Mapping[str, Sequence[str]] | None = None,
    capacity: int = MAX_IDS_PER_SUBSCRIPTION,
    spread: int | None = None,
) -> Plan:
    """Assign users to healthy accounts with as few changed chunks as possible.

    `current` is the assignment in force (account -> user ids). A user stays with its
    account while that account is healthy and has room; everyone else goes to the least
    loaded account with room, then to polling. Loads are evened out only when two accounts
    differ by more than `spread` (default: half a chunk), since that recreates subscriptions.
    """
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    spread = capacity // 2 if spread is None else spread
    if spread < 0:
        raise ValueError("spread must not be negative")
    wanted = set(user_ids)
    order = list(dict.fromkeys(accounts))
    current = current or {}

    chunks: dict[str, list[str]] = {a: [] for a in order}
    placed: set[str] = set()
    for a in order:
        # Sorted so that, if the capacity shrank, who stays is deterministic.
        for uid in sorted(set(current.get(a, ()))):
            if uid in wanted and uid not in placed and len(chunks[a]) < capacity:
                chunks[a].append(uid)
                placed.add(uid)

    heap = [(len(chunks[a]), i, a) for i, a in enumerate(order) if len(chunks[a]) < capacity]
    heapq.heapify(heap)
    polled: list[str] = []
    for uid in sorted(wanted - placed):
        if not heap:
            polled.append(uid)
            continue
        load, i, a = heapq.heappop(heap)
        chunks[a].append(uid)
        if load + 1 < capacity:
            heapq.heappush(heap, (load + 1, i, a))

    # Only worth it when nobody is polled: with polled users every account is already full.
    if not polled:
        _rebalance(chunks, order, capacity, spread)

    final = {a: tuple(sorted(chunks[a])) for a in order}
    changed = tuple(a for a in order if set(final[a]) != set(current.get(a, ())))
    dropped = tuple(a for a in current if a not in final)
    return Plan(
        chunks=final, polled=tuple(polled), changed_accounts=changed, dropped_accounts=dropped
    )


def resource_for(user_ids: Sequence[str]) -> str:
    """The presence subscription resource for these Graph user ids (quoted, as Graph wants)."""
    if not user_ids:
        raise ValueError("a presence subscription needs at least one user id")
    if len(user_ids) > MAX_IDS_PER_SUBSCRIPTION:
        raise ValueError(f"at most {MAX_IDS_PER_SUBSCRIPTION} ids per presence subscription")
    for uid in user_ids:
        # Object ids are GUIDs; a quote would break out of the OData string literal.
        if not uid or "'" in uid:
            raise ValueError("user ids must be non-empty and free of quotes")
    quoted = ",".join(f"'{uid}'" for uid in user_ids)
    return f"/communications/presences?$filter=id in ({quoted})"


def polling_batches(
    user_ids: Sequence[str], size: int = MAX_IDS_PER_PRESENCE_CALL
) -> list[list[str]]:
    """The bodies of getPresencesByUserId calls that cover these users once, in order."""
    if not 1 <= size <= MAX_IDS_PER_PRESENCE_CALL:
        raise ValueError(f"batch size must be 1..{MAX_IDS_PER_PRESENCE_CALL}")
    unique = list(dict.fromkeys(user_ids))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def polling_interval(
    n_users: int, calls_per_30s: int = PRESENCE_CALLS_PER_30S, safety: float = 0.5
) -> float:
    """The shortest period, in seconds, for one polling round over n users within the limit.

    It is also the latency bound of the polled users. `safety` is the share of the app's
    per-tenant budget polling may use; the rest is for the resync sweep and other reads.
    """
    if n_users < 0:
        raise ValueError("n_users must not be negative")
    if calls_per_30s < 1:
        raise ValueError("calls_per_30s must be positive")
    if not 0 < safety <= 1:
        raise ValueError("safety must be in (0, 1]")
    calls = math.ceil(n_users / MAX_IDS_PER_PRESENCE_CALL)
    return calls * 30.0 / (calls_per_30s * safety)
