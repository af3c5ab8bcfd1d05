"""Teams presence the bridge has acted on: the last one applied per Graph user, and the
presence our own PBX-call session set (so the notification it causes is not taken for a
change the user made).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from core.state._private import dumps, loads, tenant_key


def presence_key(tenant: str) -> str:
    """Hash: graph user id -> JSON of the last presence applied."""
    return tenant_key(tenant, "presence")


def own_key(tenant: str, graph_id: str) -> str:
    """String: the presence our own session set for a user, EX its duration."""
    return tenant_key(tenant, f"own:{graph_id}")


@dataclass(frozen=True, slots=True)
class LastPresence:
    """The last presence applied for a Graph user; orders the next one (see the pipeline)."""

    availability: str = ""
    activity: str = ""
    sequence: str | None = None  # Graph's sequenceNumber, lexicographically sortable
    observed_at: float = 0.0

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> LastPresence:
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        sequence, observed = data.get("sequence"), data.get("observed_at")
        return cls(
            _str(data.get("availability")),
            _str(data.get("activity")),
            sequence if isinstance(sequence, str) else None,
            float(observed) if isinstance(observed, int | float) else 0.0,
        )

    def to_bytes(self) -> bytes:
        # {"availability", "activity", "sequence", "observed_at"}: the fields, in order.
        return dumps(self)


@dataclass(frozen=True, slots=True)
class OwnPresence:
    """What our PBX-call session set in Teams (a JSON pair)."""

    availability: str = ""
    activity: str = ""

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> OwnPresence:
        data = loads(raw)
        if not isinstance(data, list) or len(data) != 2:
            return cls()
        return cls(_str(data[0]), _str(data[1]))

    def to_bytes(self) -> bytes:
        return dumps([self.availability, self.activity])


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


# ---- last presence applied ------------------------------------------------------------------


def queue_last(pipe: Redis, tenant: str, graph_ids: Sequence[str]) -> None:
    """Queue the read of `read_last` into a pipeline; decode the answer with `last_from`."""
    pipe.hmget(presence_key(tenant), graph_ids)


def last_from(raw: Sequence[bytes | None]) -> list[LastPresence | None]:
    return [LastPresence.from_bytes(r) if r else None for r in raw]


def read_last(redis: Redis, tenant: str, graph_ids: Sequence[str]) -> list[LastPresence | None]:
    """The last presence applied for each id, None where none was."""
    if not graph_ids:
        return []
    return last_from(redis.hmget(presence_key(tenant), graph_ids))  # type: ignore[arg-type]


def record(redis: Redis, tenant: str, applied: Mapping[str, LastPresence]) -> None:
    """Remember what was applied (on a pipeline: the batch's one write)."""
    if applied:
        redis.hset(presence_key(tenant), mapping={g: p.to_bytes() for g, p in applied.items()})


# ---- our own session's presence -------------------------------------------------------------


def queue_own(pipe: Redis, tenant: str, graph_ids: Sequence[str]) -> None:
    """Queue the read of the own-session markers; decode the answer with `own_from`."""
    pipe.mget([own_key(tenant, g) for g in graph_ids])


def own_from(raw: Sequence[bytes | None]) -> list[OwnPresence | None]:
    return [OwnPresence.from_bytes(r) if r else None for r in raw]


def set_own(redis: Redis, tenant: str, graph_id: str, own: OwnPresence, ttl_seconds: int) -> None:
    redis.set(own_key(tenant, graph_id), own.to_bytes(), ex=ttl_seconds)


def clear_own(redis: Redis, tenant: str, graph_id: str) -> None:
    redis.delete(own_key(tenant, graph_id))
