"""Helpers shared by the record modules; not for use outside `core.state`."""

from __future__ import annotations

from typing import Any

import orjson
from redis import Redis
from redis.asyncio.client import Pipeline as AsyncPipeline

PREFIX = "pb:"


def tenant_key(tenant: str, suffix: str) -> str:
    """`pb:tenant:{tenant}:{suffix}`: the shape of every per-tenant key."""
    return f"{PREFIX}tenant:{tenant}:{suffix}"


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def loads(raw: bytes | str | None) -> Any:
    """Decoded JSON, or None for a missing or unreadable value (an older or foreign writer)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def number(value: object) -> float | None:
    """A stored number (a JSON value or a hash field's text); None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes | str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def count(value: object) -> int | None:
    """A stored JSON integer; None when absent or not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# A sync client or pipeline, or the web process's asyncio pipeline: functions that only queue
# commands into a batch take either (queueing is synchronous on both).
Batch = Redis | AsyncPipeline
