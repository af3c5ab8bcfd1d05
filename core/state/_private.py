"""Helpers shared by the record modules; not for use outside `core.state`."""

from __future__ import annotations

from typing import Any

import orjson

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


# Tolerant field readers: a stored value of the wrong type reads as the field's default.
def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
