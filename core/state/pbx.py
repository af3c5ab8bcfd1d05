"""What PBX adapters keep in Redis: the builtin adapter's profiles and their change stream,
an adapter's own state (SIP ETags), and the `http` adapter's shared OAuth token.

Per tenant: `…:builtin` (hash: PBX user -> `BuiltinProfile` JSON, served by the web
process), `…:builtin:events` (stream of the same JSON, capped, for SSE followers),
`…:adapter-state` (string, opaque to everyone but the adapter), `…:pbx-token` (string,
sealed `PbxToken` JSON, expires with the token) and `…:pbx-token:lock` (owner token, held
by the one worker fetching).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis, RedisError
from redis.asyncio import Redis as AsyncRedis

from core.state._private import (
    FieldsRecord,
    as_int,
    loads,
    opt_float,
    opt_str,
    tenant_key,
    text,
)

BUILTIN_EVENTS_MAXLEN: Final = 10_000

# Deletes KEYS[1] only while it still holds ARGV[1]: releases our lock, or drops the token
# we used (Fernet output differs on every write, so equal bytes mean the same stored token).
_COMPARE_AND_DELETE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def builtin_key(tenant: str) -> str:
    """Hash: PBX user -> the profile the builtin adapter serves."""
    return tenant_key(tenant, "builtin")


def builtin_events_key(tenant: str) -> str:
    """Stream: each builtin profile as it was written, capped at about 10,000 entries."""
    return tenant_key(tenant, "builtin:events")


def adapter_state_key(tenant: str) -> str:
    """String: a PBX adapter's exported state."""
    return tenant_key(tenant, "adapter-state")


def token_key(tenant: str) -> str:
    """String, sealed, expiring with the token: the PBX API's OAuth2 token."""
    return tenant_key(tenant, "pbx-token")


def token_lock_key(tenant: str) -> str:
    """String with expiry: held by the one worker fetching the shared PBX token."""
    return tenant_key(tenant, "pbx-token:lock")


# ---- the builtin adapter ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltinProfile(FieldsRecord):
    """One PBX user's profile as the builtin adapter's API serves it."""

    user: str
    profile: str = ""
    availability: str = ""
    activity: str = ""
    version: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_bytes(cls, raw: bytes | str | None, user: str = "") -> BuiltinProfile | None:
        """None for a missing or unreadable value; `user` (the hash field) fills a gap."""
        data = loads(raw)
        if not isinstance(data, dict):
            return None
        return cls(
            user=opt_str(data.get("user")) or user,
            profile=opt_str(data.get("profile")) or "",
            availability=opt_str(data.get("availability")) or "",
            activity=opt_str(data.get("activity")) or "",
            version=as_int(data.get("version")),
            updated_at=opt_float(data.get("updated_at")) or 0.0,
        )


@dataclass(frozen=True)
class BuiltinEvent:
    """One entry of a tenant's builtin profile stream; `data` is the profile's JSON."""

    tenant: str
    id: str
    data: bytes

    @property
    def profile(self) -> BuiltinProfile | None:
        return BuiltinProfile.from_bytes(self.data)


def publish_builtin(redis: Redis, tenant: str, profiles: Sequence[BuiltinProfile]) -> None:
    """Store profiles and append each to the stream; queue into a pipeline for one round trip."""
    records = {p.user: p.to_bytes() for p in profiles}
    if not records:
        return
    redis.hset(builtin_key(tenant), mapping=records)  # type: ignore[arg-type]
    stream = builtin_events_key(tenant)
    for record in records.values():
        redis.xadd(
            stream,
            {"data": record},
            maxlen=BUILTIN_EVENTS_MAXLEN,
            approximate=True,
        )


def builtin_profile(redis: Redis, tenant: str, user: str) -> BuiltinProfile | None:
    return BuiltinProfile.from_bytes(redis.hget(builtin_key(tenant), user), user)


def builtin_profiles(redis: Redis, tenant: str, users: Sequence[str]) -> dict[str, BuiltinProfile]:
    """The served profiles of `users`; users without one are left out."""
    if not users:
        return {}
    raw = redis.hmget(builtin_key(tenant), users)
    found = {u: BuiltinProfile.from_bytes(r, u) for u, r in zip(users, raw, strict=True)}
    return {u: p for u, p in found.items() if p is not None}


def builtin_count(redis: Redis, tenant: str) -> int:
    """How many PBX users the builtin adapter serves a profile for."""
    return int(redis.hlen(builtin_key(tenant)))


def queue_builtin_profile(pipe: Redis, tenant: str, user: str) -> None:
    """`builtin_profile` as one command queued into a pipeline; decode with
    `BuiltinProfile.from_bytes`."""
    pipe.hget(builtin_key(tenant), user)


async def read_builtin_profile(redis: AsyncRedis, tenant: str, user: str) -> BuiltinProfile | None:
    return BuiltinProfile.from_bytes(await redis.hget(builtin_key(tenant), user), user)


async def read_builtin_profiles(redis: AsyncRedis, tenant: str) -> list[BuiltinProfile]:
    """Every profile the builtin adapter serves, by user."""
    raw = await redis.hgetall(builtin_key(tenant))
    found = (BuiltinProfile.from_bytes(v, text(k)) for k, v in raw.items())
    return sorted((p for p in found if p is not None), key=lambda p: p.user)


async def builtin_events_position(redis: AsyncRedis, tenant: str) -> str:
    """The id of the stream's newest entry: "now" pinned to a real id, so that nothing
    slips between two reads; "0-0" when there is no stream yet."""
    try:
        info = await redis.xinfo_stream(builtin_events_key(tenant))
    except RedisError:
        return "0-0"
    return text(info["last-generated-id"])


async def read_builtin_events(
    redis: AsyncRedis, positions: Mapping[str, str], *, block_ms: int, count: int
) -> list[BuiltinEvent]:
    """Entries after each tenant's position (tenant -> last id seen), waiting up to
    `block_ms` for the first; oldest first per tenant."""
    tenants = {builtin_events_key(t): t for t in positions}
    read: Any = await redis.xread(
        {builtin_events_key(t): last for t, last in positions.items()}, block=block_ms,
        count=count,
    )  # fmt: skip
    return [
        BuiltinEvent(tenants[text(stream)], text(entry_id), fields[b"data"])
        for stream, entries in read or []
        for entry_id, fields in entries
    ]


# ---- an adapter's own state ---------------------------------------------------------------


def adapter_state(redis: Redis, tenant: str) -> str | None:
    raw = redis.get(adapter_state_key(tenant))
    return None if raw is None else text(raw)


def save_adapter_state(redis: Redis, tenant: str, state: str | bytes) -> None:
    redis.set(adapter_state_key(tenant), state)


# ---- the http adapter's shared token ------------------------------------------------------


@dataclass(frozen=True)
class PbxToken:
    """The shared token before sealing; `for_` names the endpoint, client and secret (a
    digest) it belongs to, so a changed configuration never picks up the old client's."""

    access_token: str
    expires_at: float  # infinite for a token the PBX gives no lifetime
    for_: str = ""

    # The standard library's json, not orjson: it writes (and reads) an infinite expiry.
    def to_bytes(self) -> bytes:
        body = {"access_token": self.access_token, "expires_at": self.expires_at, "for": self.for_}
        return json.dumps(body).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> PbxToken | None:
        """None when unreadable or without a token: the caller fetches a new one."""
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        value, expires = opt_str(data.get("access_token")), opt_float(data.get("expires_at"))
        if value is None or expires is None:
            return None
        return cls(value, expires, opt_str(data.get("for")) or "")


def sealed_token(redis: Redis, tenant: str) -> bytes | None:
    """The stored token, still sealed (the cipher lives with the adapter's settings)."""
    raw = redis.get(token_key(tenant))
    return raw if isinstance(raw, bytes) else None


def save_sealed_token(redis: Redis, tenant: str, sealed: bytes, ttl: int | None) -> None:
    """Store a sealed token; `ttl` None keeps it until replaced."""
    redis.set(token_key(tenant), sealed, ex=ttl)


def drop_sealed_token(redis: Redis, tenant: str, sealed: bytes) -> None:
    """Delete the stored token only while it is still `sealed` (not a newer one)."""
    redis.register_script(_COMPARE_AND_DELETE)(keys=[token_key(tenant)], args=[sealed])


def take_token_lock(redis: Redis, tenant: str, owner: str, ms: int) -> bool:
    return bool(redis.set(token_lock_key(tenant), owner, nx=True, px=ms))


def release_token_lock(redis: Redis, tenant: str, owner: str) -> None:
    """Release the lock only while `owner` still holds it (it may have expired meanwhile)."""
    redis.register_script(_COMPARE_AND_DELETE)(keys=[token_lock_key(tenant)], args=[owner])
