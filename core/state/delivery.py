"""What each PBX user's profile should be (versioned), what the PBX has, and what it refused.

Per tenant: `…:desired` (hash: PBX user -> `Desired` JSON), `…:desired:versions` (hash: the
last version handed out per user), `…:applied` (hash: PBX user -> version applied) and
`…:dead` (hash: PBX user -> its latest `DeadLetter`). Versions come from one atomic counter
per user, and a desired record is only replaced by a newer version, so two workers racing
on the same user never leave a stale profile. `Delivery.pending` is the one pending rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.state import profiles
from core.state._private import (
    FieldsRecord,
    as_int,
    dumps,
    loads,
    opt_float,
    opt_str,
    tenant_key,
    text,
)

# KEYS: desired hash, version counter hash. ARGV: user, profile JSON (without version), ...
# cjson keeps 14 significant digits, so the stored set_at is rounded to about 0.1 ms.
_SET_DESIRED = """
local out = {}
for i = 1, #ARGV, 2 do
  local version = redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  local record = cjson.decode(ARGV[i + 1])
  record['version'] = version
  redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(record))
  out[#out + 1] = version
end
return out
"""


def desired_key(tenant: str) -> str:
    """Hash: PBX user -> desired profile JSON with its version."""
    return tenant_key(tenant, "desired")


def versions_key(tenant: str) -> str:
    """Hash: PBX user -> the last desired version handed out."""
    return tenant_key(tenant, "desired:versions")


def applied_key(tenant: str) -> str:
    """Hash: PBX user -> the version last applied to the PBX."""
    return tenant_key(tenant, "applied")


def dead_key(tenant: str) -> str:
    """Hash: PBX user -> JSON of its latest dead letter, with the PBX's reason."""
    return tenant_key(tenant, "dead")


Reply = bytes | str | None  # one field of an HMGET reply


class Wanted(Protocol):
    """What a new desired record is made of (the workers' `ProfileChange` is one)."""

    @property
    def user(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def availability(self) -> str: ...
    @property
    def activity(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Desired(FieldsRecord):
    """The profile one PBX user should show, with the version that orders it."""

    user: str
    profile: str = ""
    availability: str = ""
    activity: str = ""
    version: int = 0
    set_at: float = 0.0

    @classmethod
    def from_bytes(cls, raw: bytes | str | None, user: str = "") -> Desired | None:
        """None for a missing or unreadable value; `user` (the hash field) fills a gap."""
        data = loads(raw)
        return cls(*_desired_fields(data, user)) if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class DeadLetter(FieldsRecord):
    """A desired record the PBX refused for good, with its reason and when."""

    user: str
    profile: str = ""
    availability: str = ""
    activity: str = ""
    version: int = 0
    set_at: float = 0.0
    reason: str = ""
    at: float = 0.0

    @classmethod
    def from_bytes(cls, raw: bytes | str | None, user: str = "") -> DeadLetter | None:
        """None for a missing or unreadable value; `user` (the hash field) fills a gap."""
        data = loads(raw)
        if not isinstance(data, dict):
            return None
        return cls(
            *_desired_fields(data, user),
            reason=opt_str(data.get("reason")) or "",
            at=opt_float(data.get("at")) or 0.0,
        )


def _desired_fields(data: Mapping[str, object], user: str) -> tuple[str, str, str, str, int, float]:
    """The fields a dead letter shares with the desired record it keeps, in their order
    (positional: a keyword dict per record showed in the delivery's profile)."""
    get = data.get
    return (
        opt_str(get("user")) or user,
        opt_str(get("profile")) or "",
        opt_str(get("availability")) or "",
        opt_str(get("activity")) or "",
        as_int(get("version")),
        opt_float(get("set_at")) or 0.0,
    )


@dataclass(frozen=True)
class Delivery:
    """Where one PBX user's delivery stands."""

    desired: Desired | None = None
    applied: int = 0  # the version the PBX has
    dead: DeadLetter | None = None

    @property
    def behind(self) -> bool:
        """The PBX lacks the desired version (whether or not it refused it)."""
        return self.desired is not None and self.desired.version > self.applied

    @property
    def pending(self) -> bool:
        """The pending rule: behind, and that very version is not dead-lettered (a refused
        version waits for an operator's replay or a newer version, not for a retry)."""
        wanted, dead = self.desired, self.dead
        return (
            wanted is not None
            and wanted.version > self.applied
            and (dead is None or dead.version != wanted.version)
        )


# ---- desired ------------------------------------------------------------------------------


def set_desired(redis: Redis, tenant: str, changes: Sequence[Wanted]) -> list[Desired]:
    """Store new desired profiles; each gets the next version of its user (one round trip)."""
    if not changes:
        return []
    now = time.time()
    args: list[str | bytes] = []
    for c in changes:
        record = {"user": c.user, "profile": c.profile, "availability": c.availability,
                  "activity": c.activity, "set_at": now}  # fmt: skip
        args += [c.user, dumps(record)]
    script = redis.register_script(_SET_DESIRED)
    versions = script(keys=[desired_key(tenant), versions_key(tenant)], args=args)
    return [
        Desired(c.user, c.profile, c.availability, c.activity, int(v), now)
        for c, v in zip(changes, versions, strict=True)
    ]


def has_desired(redis: Redis, tenant: str, user: str) -> bool:
    return bool(redis.hexists(desired_key(tenant), user))


# ---- where deliveries stand ---------------------------------------------------------------


def load(redis: Redis, tenant: str, users: Sequence[str]) -> dict[str, Delivery]:
    """Desired record, applied version and dead letter of each user, in one round trip."""
    if not users:
        return {}
    pipe = redis.pipeline(transaction=False)
    queue_load(pipe, tenant, users)
    return deliveries_from(users, *pipe.execute())


def queue_load(pipe: Redis, tenant: str, users: Sequence[str]) -> None:
    """`load` as three commands queued into a pipeline; pass their three replies, in order,
    to `deliveries_from`."""
    pipe.hmget(desired_key(tenant), users)
    pipe.hmget(applied_key(tenant), users)
    pipe.hmget(dead_key(tenant), users)


def deliveries_from(
    users: Sequence[str],
    desired: Iterable[Reply],
    applied: Iterable[Reply],
    dead: Iterable[Reply],
) -> dict[str, Delivery]:
    return {
        user: _delivery(user, d, a, x)
        for user, d, a, x in zip(users, desired, applied, dead, strict=True)
    }


def _delivery(user: str, desired: Reply, applied: Reply, dead: Reply) -> Delivery:
    return Delivery(
        Desired.from_bytes(desired, user), as_int(loads(applied)), DeadLetter.from_bytes(dead, user)
    )


def behind(redis: Redis, tenant: str, users: Sequence[str]) -> list[Desired]:
    """The desired records the PBX lacks (`Delivery.behind`), in `users`' order: the
    delivery's hot read, without the dead letters `load` reads too (one round trip)."""
    if not users:
        return []
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(desired_key(tenant), users)
    pipe.hmget(applied_key(tenant), users)
    desired, applied = pipe.execute()
    out = []
    for user, d, a in zip(users, desired, applied, strict=True):
        wanted = Desired.from_bytes(d, user)
        if wanted is not None and wanted.version > as_int(loads(a)):
            out.append(wanted)
    return out


def pending_users(redis: Redis, tenant: str) -> list[str]:
    """Every user whose delivery is pending (see `Delivery.pending`), sorted."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(desired_key(tenant))
    pipe.hgetall(applied_key(tenant))
    pipe.hgetall(dead_key(tenant))
    desired, applied, dead = pipe.execute()
    pending = []
    for field, raw in desired.items():
        user = text(field)
        if _delivery(user, raw, applied.get(field), dead.get(field)).pending:
            pending.append(user)
    return sorted(pending)


def pending_count(redis: Redis, tenant: str) -> int:
    return len(pending_users(redis, tenant))


def own_profiles(redis: Redis, tenant: str, users: Sequence[str]) -> dict[str, frozenset[str]]:
    """What the PBX may show of ours, per user: the profile of the version it last got from
    us, and a newer desired one that may be on its way (not one it refused). A PBX that reads
    one of these back is showing our own write, not a choice of its user."""
    found = load(redis, tenant, users)
    # Only the desired record's profile is stored; an older applied one is in the event log.
    behind = [u for u, d in found.items() if d.behind and d.applied]
    logs: dict[str, Any] = {}
    if behind:
        pipe = redis.pipeline(transaction=False)
        for user in behind:
            profiles.queue_recent_events(pipe, tenant, user)
        logs = dict(zip(behind, pipe.execute(), strict=True))
    own: dict[str, frozenset[str]] = {}
    for user, d in found.items():
        ours = set()
        if d.desired is not None and (not d.behind or d.pending):
            ours.add(d.desired.profile)
        if user in logs:
            applied = _applied_profile(profiles.events_from(logs[user]), d.applied)
            if applied is not None:
                ours.add(applied)
        own[user] = frozenset(ours)
    return own


def _applied_profile(events: Iterable[Mapping[str, Any]], version: int) -> str | None:
    """The profile of `version` in a user's event log (newest first), while it is kept."""
    for event in events:
        if event.get("result") == "applied" and as_int(event.get("version")) == version:
            return opt_str(event.get("profile"))
    return None


def mark_applied(
    redis: Redis, tenant: str, applied: Sequence[Desired], event_extra: Mapping[str, Any]
) -> None:
    """Record versions the PBX now has, clear their dead letters, log the transitions."""
    if not applied:
        return
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    pipe.hset(applied_key(tenant), mapping={d.user: d.version for d in applied})
    pipe.hdel(dead_key(tenant), *[d.user for d in applied])
    profiles.record_events(
        pipe,
        tenant,
        [
            (
                d.user,
                {
                    "profile": d.profile,
                    "availability": d.availability,
                    "activity": d.activity,
                    "version": d.version,
                    "result": "applied",
                    **event_extra,
                    "latency_ms": round((now - d.set_at) * 1000, 1),
                },
            )
            for d in applied
        ],
    )
    pipe.execute()


# ---- dead letters -------------------------------------------------------------------------


def dead_letter(redis: Redis, tenant: str, d: Desired, reason: str) -> None:
    """The PBX refused `d` for good: keep it with the reason, and log the transition."""
    letter = DeadLetter(**asdict(d), reason=reason, at=time.time())
    pipe = redis.pipeline(transaction=False)
    pipe.hset(dead_key(tenant), d.user, letter.to_bytes())
    profiles.record_event(
        pipe,
        tenant,
        d.user,
        {"profile": d.profile, "version": d.version, "result": "dead-lettered", "reason": reason},
    )
    pipe.execute()


def dead_letters(redis: Redis, tenant: str) -> list[DeadLetter]:
    """The tenant's dead letters, oldest first."""
    raw: dict[bytes, bytes] = redis.hgetall(dead_key(tenant))  # type: ignore[assignment]
    letters = [DeadLetter.from_bytes(v, text(k)) for k, v in raw.items()]
    return sorted((d for d in letters if d is not None), key=lambda d: (d.at, d.user))


def clear_dead_letters(redis: Redis, tenant: str, users: Sequence[str]) -> None:
    if users:
        redis.hdel(dead_key(tenant), *users)


def queue_dead_letter_count(pipe: Redis | AsyncRedis, tenant: str) -> None:
    """HLEN of the dead letters queued into a pipeline (sync or asyncio); the reply is the count."""
    pipe.hlen(dead_key(tenant))
