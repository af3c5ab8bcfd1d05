"""Per PBX user: the profile state machine's record, and the capped list of its transitions.

`pb:tenant:{t}:profiles` is a hash: PBX user -> `ProfileState` JSON (written by the
pipeline, read by the status page and the CLI). `pb:tenant:{t}:events:{user}` is a list of
recent transitions, newest first, capped at `EVENTS_KEPT`. The rules that move a state are
pure and live in `workers.profile_state`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.state._private import as_int, dumps, loads, opt_float, opt_str, tenant_key, text

EVENTS_KEPT: Final = 50

# KEYS: event lists. ARGV: cap, then one event JSON per key.
_RECORD_EVENTS = """
local cap = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i + 1])
  redis.call('LTRIM', KEYS[i], 0, cap - 1)
end
return #KEYS
"""


def profiles_key(tenant: str) -> str:
    """Hash: PBX user -> profile state JSON."""
    return tenant_key(tenant, "profiles")


def events_key(tenant: str, user: str) -> str:
    """List: the recent transitions of one PBX user, newest first."""
    return tenant_key(tenant, f"events:{user}")


@dataclass(frozen=True, slots=True)
class ProfileState:
    """Everything the state machine remembers about one PBX user; plain JSON values only."""

    current: str | None = None  # the profile the PBX should show; None until first known
    restore_to: str | None = None  # the last non-sticky profile
    sticky_since: float | None = None  # set while a sticky profile is shown
    pending_profile: str | None = None  # a damped change waiting to hold
    pending_sticky: bool = False
    pending_due: float | None = None
    last_profile: str | None = None  # the last decision, to spot repeats
    last_sticky: bool = False
    availability: str = ""  # the Teams presence behind the last decision
    activity: str = ""
    version: int = 0  # grows with every change of `current`

    @property
    def sticky(self) -> bool:
        return self.sticky_since is not None

    @property
    def pending(self) -> bool:
        return self.pending_due is not None

    def to_dict(self) -> dict[str, object]:
        # Not dataclasses.asdict: its deep copy cost more than the rest of a batch's mapping.
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProfileState:
        """Rebuild from `to_dict` output; missing or mistyped fields fall back to defaults."""
        return cls(
            current=opt_str(data.get("current")),
            restore_to=opt_str(data.get("restore_to")),
            sticky_since=opt_float(data.get("sticky_since")),
            pending_profile=opt_str(data.get("pending_profile")),
            pending_sticky=data.get("pending_sticky") is True,
            pending_due=opt_float(data.get("pending_due")),
            last_profile=opt_str(data.get("last_profile")),
            last_sticky=data.get("last_sticky") is True,
            availability=opt_str(data.get("availability")) or "",
            activity=opt_str(data.get("activity")) or "",
            version=as_int(data.get("version")),
        )

    def to_bytes(self) -> bytes:
        return dumps(self)  # `to_dict`'s JSON, without building the dict

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> ProfileState:
        """The stored state; a missing or unreadable value is the initial state."""
        data = loads(raw)
        return cls.from_dict(data) if isinstance(data, dict) else cls()


_FIELDS: Final = tuple(f.name for f in fields(ProfileState))


# ---- profile states -----------------------------------------------------------------------


def load(redis: Redis, tenant: str, users: Sequence[str]) -> dict[str, ProfileState]:
    """The stored states of `users`, in their order; users without one are left out."""
    if not users:
        return {}
    return states_from(users, redis.hmget(profiles_key(tenant), users))


def queue_load(pipe: Redis, tenant: str, users: Sequence[str]) -> None:
    """`load` as one command queued into a pipeline; decode its reply with `states_from`."""
    pipe.hmget(profiles_key(tenant), users)


def states_from(
    users: Iterable[str], reply: Iterable[bytes | str | None]
) -> dict[str, ProfileState]:
    pairs = zip(users, reply, strict=True)
    return {user: ProfileState.from_bytes(raw) for user, raw in pairs if raw}


def queue_users(pipe: Redis, tenant: str) -> None:
    """The PBX users with a state, as one command queued into a pipeline; decode its reply
    with `users_from`."""
    pipe.hkeys(profiles_key(tenant))


def users_from(reply: Iterable[bytes | str]) -> list[str]:
    return [text(u) for u in reply]


def exists(redis: Redis, tenant: str, user: str) -> bool:
    return bool(redis.hexists(profiles_key(tenant), user))


def save(redis: Redis, tenant: str, states: Mapping[str, ProfileState]) -> None:
    """Store states; with a pipeline, one queued command."""
    if states:
        redis.hset(profiles_key(tenant), mapping={u: s.to_bytes() for u, s in states.items()})


async def load_all_raw(redis: AsyncRedis, tenant: str) -> dict[str, bytes]:
    """Every stored state as its bytes: the status page's live feed compares them as they are."""
    raw = await redis.hgetall(profiles_key(tenant))
    return {text(u): r for u, r in raw.items() if isinstance(r, bytes)}


async def load_raw(redis: AsyncRedis, tenant: str, users: Sequence[str]) -> dict[str, bytes]:
    """The stored bytes of `users`' states; users without one are left out."""
    raw = await redis.hmget(profiles_key(tenant), users)
    return {u: r for u, r in zip(users, raw, strict=True) if isinstance(r, bytes)}


# ---- transitions --------------------------------------------------------------------------


def record_event(redis: Redis, tenant: str, user: str, event: Mapping[str, Any]) -> None:
    """Prepend one transition (stamped with the time) and trim the list; pipeline-friendly."""
    key = events_key(tenant, user)
    redis.lpush(key, dumps({"at": time.time(), **event}))
    redis.ltrim(key, 0, EVENTS_KEPT - 1)


def record_events(
    redis: Redis, tenant: str, events: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """`record_event` for many users in one command: per-command client overhead, not
    Redis, was the largest cost of a batch (two commands per user)."""
    if not events:
        return
    now = time.time()
    script = redis.register_script(_RECORD_EVENTS)
    script(
        keys=[events_key(tenant, user) for user, _ in events],
        args=[EVENTS_KEPT, *[dumps({"at": now, **event}) for _, event in events]],
    )


def recent_events(
    redis: Redis, tenant: str, user: str, count: int = EVENTS_KEPT
) -> list[dict[str, Any]]:
    """The newest `count` transitions of `user`, newest first."""
    return events_from(redis.lrange(events_key(tenant, user), 0, count - 1))


def queue_recent_events(pipe: Redis, tenant: str, user: str, count: int = EVENTS_KEPT) -> None:
    """`recent_events` as one command queued into a pipeline; decode with `events_from`."""
    pipe.lrange(events_key(tenant, user), 0, count - 1)


def events_from(reply: Iterable[bytes | str]) -> list[dict[str, Any]]:
    """Transitions are free-form JSON objects (`at`, `result`, then what the writer knew);
    an unreadable entry is skipped."""
    return [e for e in (loads(raw) for raw in reply) if isinstance(e, dict)]
