"""Presence updates -> PBX profiles: order, staleness, links, mapping, per-user state.

Everything for one batch is read in one round trip and written in one more; the mapping
and the state machine in between are pure. Only users about to enter a sticky profile cost
more: the PBX is read for them first (`workers.restore`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from redis import Redis

from core.state import delivery, links, presence, profiles
from core.state.presence import LastPresence, OwnPresence
from core.state.profiles import ProfileState
from workers.mapping import RuleSet, decide
from workers.pbx.base import ProfileChange
from workers.profile_state import enters_sticky, keep_shown, step, tick

# Reads what the PBX shows for these users, where it can tell (`workers.restore.read_shown`).
ReadShown = Callable[[Sequence[str]], Mapping[str, str]]
# Set by `workers.rich` on what a notification carried: ordered by its sequence number only,
# never authoritative like a read of Graph.
FROM_NOTIFICATION = "bridge:fromNotification"
# Graph's sequence numbers are short and sortable as text; anything else is not ordered by.
_SEQUENCE = re.compile(r"[0-9A-Za-z._:+/=-]{1,64}")
_MAX_INT_SEQUENCE = 10**20


def sequence_of(value: object) -> str | None:
    """A sequenceNumber as the pipeline compares it; None for what cannot be one."""
    if isinstance(value, str) and _SEQUENCE.fullmatch(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INT_SEQUENCE:
        return f"{value:020d}"  # zero-padded, so numbers sort as text
    return None


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    user_id: str  # Graph user id
    availability: str
    activity: str
    sequence: str | None = None  # Graph's sequenceNumber, lexicographically sortable
    observed_at: float = 0.0  # when it was read or received (orders updates without one)
    from_notification: bool = False  # carried by a (rich) notification, not read from Graph

    @classmethod
    def from_graph(cls, presence: dict[str, object], observed_at: float) -> PresenceUpdate:
        return cls(
            str(presence["id"]),
            str(presence.get("availability") or ""),
            str(presence.get("activity") or ""),
            sequence_of(presence.get("sequenceNumber")),
            observed_at,
            presence.get(FROM_NOTIFICATION) is True,
        )


@dataclass
class BatchResult:
    changes: list[ProfileChange] = field(default_factory=list)
    stale: int = 0
    duplicate: int = 0
    unlinked: int = 0
    own_session: int = 0
    pending_due: dict[str, float] = field(default_factory=dict)  # pbx user -> due time


def is_newer(update: PresenceUpdate, last: LastPresence | None) -> bool | None:
    """True: apply; False: stale; None: same presence again (a no-op).

    A read of Graph observed after the last presence applied is what Graph says now, whatever
    its sequence number: so a sequence number that came with a notification (garbage, or one
    far ahead) holds only until the next read or sweep, never for good.
    """
    if last is None:
        return True
    if update.sequence and last.sequence:
        later_read = not update.from_notification and update.observed_at > last.observed_at
        if update.sequence < last.sequence and not later_read:
            return False
        if update.sequence == last.sequence and not later_read:
            return None
    elif update.observed_at < last.observed_at:
        return False
    same = (update.availability, update.activity) == (last.availability, last.activity)
    return None if same else True


def latest_per_user(updates: list[PresenceUpdate]) -> list[PresenceUpdate]:
    """Within a batch only each user's newest update matters (last writer wins)."""
    newest: dict[str, PresenceUpdate] = {}
    for u in updates:
        cur = newest.get(u.user_id)
        if cur is None or is_newer(u, _as_last(cur)) is not False:
            newest[u.user_id] = u  # the same rule as against the stored presence
    return list(newest.values())


def _as_last(update: PresenceUpdate) -> LastPresence:
    return LastPresence(update.availability, update.activity, update.sequence, update.observed_at)


def process(
    redis: Redis,
    tenant: str,
    rules: RuleSet,
    hold_seconds: float,
    updates: list[PresenceUpdate],
    static_links: dict[str, list[str]] | None = None,
    now: float | None = None,
    read_shown: ReadShown | None = None,
) -> BatchResult:
    """With `read_shown`, users about to enter a sticky profile have the PBX read first: what
    it shows then (unless it is our own write) comes back when the sticky profile ends."""
    now = time.time() if now is None else now
    result = BatchResult()
    batch = latest_per_user(updates)
    if not batch:
        return result
    ids = [u.user_id for u in batch]
    pipe = redis.pipeline(transaction=False)
    presence.queue_last(pipe, tenant, ids)
    links.queue_pbx_users(pipe, tenant, ids)
    presence.queue_own(pipe, tenant, ids)
    last_raw, links_raw, own_raw = pipe.execute()
    linked_users = links.pbx_users_from(ids, links_raw, static_links)
    fresh: list[tuple[PresenceUpdate, list[str]]] = []
    presence_writes: dict[str, LastPresence] = {}
    for update, last, users, own in zip(
        batch, presence.last_from(last_raw), linked_users, presence.own_from(own_raw), strict=True
    ):
        if own is not None and own == OwnPresence(update.availability, update.activity):
            result.own_session += 1  # our own PBX-call presence coming back: not a Teams change
            continue
        verdict = is_newer(update, last)
        if verdict is False:
            result.stale += 1
            continue
        if verdict is None:
            result.duplicate += 1
            continue
        if not users:
            # Not stored: a notification may name any id, and the tenant's hash keeps only
            # its linked users.
            result.unlinked += 1
            continue
        presence_writes[update.user_id] = _as_last(update)
        fresh.append((update, users))

    pbx_users = sorted({u for _, users in fresh for u in users})
    stored = profiles.load(redis, tenant, pbx_users)
    states = {u: stored.get(u) or ProfileState() for u in pbx_users}
    decided = [(update, users, decide(rules, update.availability, update.activity))
               for update, users in fresh]  # fmt: skip
    if read_shown is not None:
        entering = sorted({user for _, users, decision in decided for user in users
                           if enters_sticky(states[user], decision)})  # fmt: skip
        if entering:
            shown = read_shown(entering)
            ours = delivery.own_profiles(redis, tenant, entering)
            for user in entering:
                states[user] = keep_shown(states[user], shown.get(user), ours[user])
    for update, users, decision in decided:
        for user in users:
            state, profile = step(
                states[user],
                decision,
                now,
                hold_seconds,
                availability=update.availability,
                activity=update.activity,
            )
            states[user] = state
            if profile is not None:
                result.changes.append(
                    ProfileChange(user, profile, update.availability, update.activity)
                )
            if state.pending_due is not None:
                result.pending_due[user] = state.pending_due

    pipe = redis.pipeline(transaction=False)
    presence.record(pipe, tenant, presence_writes)
    profiles.save(pipe, tenant, states)
    profiles.record_events(
        pipe,
        tenant,
        [
            (
                user,
                {
                    "teams": {"availability": update.availability, "activity": update.activity},
                    "profile": states[user].current,
                    "result": "decided",
                },
            )
            for update, users in fresh
            for user in users
        ],
    )
    pipe.execute()
    delivery.set_desired(redis, tenant, result.changes)
    return result


def tick_users(
    redis: Redis, tenant: str, users: list[str], now: float | None = None
) -> BatchResult:
    """Apply damped changes whose hold time has passed."""
    now = time.time() if now is None else now
    result = BatchResult()
    if not users:
        return result
    writes: dict[str, ProfileState] = {}
    for user, stored in profiles.load(redis, tenant, users).items():
        state, profile = tick(stored, now)
        writes[user] = state
        if profile is not None:
            result.changes.append(ProfileChange(user, profile, state.availability, state.activity))
        if state.pending_due is not None:
            result.pending_due[user] = state.pending_due
    profiles.save(redis, tenant, writes)
    delivery.set_desired(redis, tenant, result.changes)
    return result
