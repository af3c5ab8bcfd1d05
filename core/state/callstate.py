"""Call-state sources' records: the calls each one reported and has not ended, its status.

- `pb:tenant:{t}:callstate:{source}:calls` hash: JSON `[user, call id]` -> JSON
  `{"since": t}`. Changed in the same MULTI as the intake item that reports the call's start
  or end, so the listener that takes over (a restart, another host) starts from exactly what
  was reported and a resync can end what ended while nobody listened.
- `pb:tenant:{t}:callstate:{source}:status` string: JSON of the leading listener's status,
  expiring with its leader lock, so a dead listener shows as down.
- Counters in `pb:metrics` (`core/state/intake.py`), fields `callstate:{t}:{source}:{name}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline

from core.state._private import Batch, dumps, loads, opt_float, tenant_key, text

COUNTER_PREFIX = "callstate:"


def calls_key(tenant: str, source: str) -> str:
    return tenant_key(tenant, f"callstate:{source}:calls")


def status_key(tenant: str, source: str) -> str:
    return tenant_key(tenant, f"callstate:{source}:status")


def lock_name(tenant: str, source: str) -> str:
    """The name of the source's leader lock (`core.state.coordination.LeaderLock`)."""
    return f"callstate:{tenant}:{source}"


# ---- the calls a source reported ---------------------------------------------------------


def queue_report(
    pipe: Pipeline, tenant: str, source: str, item: Mapping[str, str], now: float
) -> None:
    """Queue the record's side of one reported `call_started` / `call_ended` item."""
    field = dumps([item["user"], item["call_id"]])
    if item["type"] == "call_started":
        pipe.hset(calls_key(tenant, source), field, dumps({"since": now}))
    else:
        pipe.hdel(calls_key(tenant, source), field)


def reported(redis: Redis, tenant: str, source: str) -> list[tuple[str, str, float]]:
    """(user, call id, since) of every call the source reported and did not end."""
    raw: Any = redis.hgetall(calls_key(tenant, source))
    out: list[tuple[str, str, float]] = []
    for field, value in raw.items():
        key, data = loads(field), loads(value)
        if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            continue  # unreadable: nothing a resync could end
        since = opt_float(data.get("since")) if isinstance(data, dict) else None
        out.append((key[0], key[1], since if since is not None else 0.0))
    return sorted(out)


# ---- the leading listener's status -------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    host: str  # who leads: host name and process id
    connected: bool  # logged in to the PBX right now
    active_calls: int
    at: float  # when this was written

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> SourceStatus | None:
        data = loads(raw)
        if not isinstance(data, dict):
            return None
        at = opt_float(data.get("at"))
        calls = data.get("active_calls")
        return cls(
            str(data.get("host") or ""),
            data.get("connected") is True,
            calls if isinstance(calls, int) and not isinstance(calls, bool) else 0,
            at if at is not None else 0.0,
        )


def save_status(
    redis: Redis, tenant: str, source: str, status: SourceStatus, ttl_seconds: float
) -> None:
    redis.set(status_key(tenant, source), dumps(asdict(status)), px=int(ttl_seconds * 1000))


def queue_status(pipe: Batch, tenant: str, source: str) -> None:
    """Queue the status read (raw bytes or None; `SourceStatus.from_bytes` decodes it)."""
    pipe.get(status_key(tenant, source))


def status(redis: Redis, tenant: str, source: str) -> SourceStatus | None:
    """The leading listener's status; None when no listener leads (or it died)."""
    raw: Any = redis.get(status_key(tenant, source))
    return SourceStatus.from_bytes(raw)


# ---- counters ----------------------------------------------------------------------------


def counter_field(tenant: str, source: str, name: str) -> str:
    return f"{COUNTER_PREFIX}{tenant}:{source}:{name}"


def parse_counter_field(field: bytes | str) -> tuple[str, str, str] | None:
    """(tenant, source, name) of a counter field of ours; None for any other field."""
    value = text(field)
    if not value.startswith(COUNTER_PREFIX):
        return None
    parts = value[len(COUNTER_PREFIX) :].split(":")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None
