"""Helpers shared by the record modules; not for use outside `core.state`."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any, cast

import orjson
from redis import Redis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.exceptions import ResponseError

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


# JSON bytes; a dataclass is written as its fields, in order (what `asdict` would give for
# plain values, without its deep copy). orjson's own function: no wrapper call per record.
dumps: Callable[[Any], bytes] = orjson.dumps


class FieldsRecord:
    """Base of the frozen-dataclass codecs whose stored form is their fields as one JSON object."""

    __slots__ = ()

    def to_dict(self) -> dict[str, object]:
        return asdict(cast(Any, self))

    def to_bytes(self) -> bytes:
        return dumps(self)  # `to_dict`'s JSON; orjson reads the fields without a deep copy


# Tolerant field readers: a stored value of the wrong type reads as the field's default.
def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


WRITE_CHUNK = 2_000  # fields per HSET: keeps each command well inside the socket timeout
TEMP_TTL_SECONDS = 3_600  # a temporary key left by a crashed writer disappears on its own


def chunks(
    items: Iterable[tuple[str, bytes]], size: int = WRITE_CHUNK
) -> Iterator[dict[str, bytes]]:
    """`items` as HSET mappings of at most `size` fields."""
    chunk: dict[str, bytes] = {}
    for key, value in items:
        chunk[key] = value
        if len(chunk) >= size:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


# Fills a hash from one JSON array [field, value, field, value, ...]. One argument per chunk
# instead of two per field: redis-py's packing of 100,000 small fields, not Redis, was the cost.
# HSETs of at most 2,000 fields stay well inside the 8,000 values Lua's unpack() takes.
_FILL_SCRIPT = """
local items = cjson.decode(ARGV[1])
for i = 1, #items, 4000 do
  redis.call('HSET', KEYS[1], unpack(items, i, math.min(i + 3999, #items)))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return #items / 2
"""


def _fill_args(chunk: Mapping[str, bytes]) -> bytes | None:
    """`chunk` as the script's JSON array; None when a value is not UTF-8 (JSON carries text)."""
    try:
        return dumps([part for field, value in chunk.items() for part in (field, value.decode())])
    except UnicodeDecodeError:
        return None


def replace_hashes(
    redis: Redis,
    hashes: Mapping[str, Iterable[tuple[str, bytes]]],
    also: Callable[[Pipeline], object] | None = None,
) -> list[int]:
    """Replace each hash by its items in one step for readers; returns each one's field count.

    Every hash is filled under a temporary key (large ones take many commands), then all are
    RENAMEd in one MULTI, together with whatever `also` queues there; a crash before that
    leaves the previous hashes untouched.
    """
    temps = {key: f"{key}:tmp:{secrets.token_hex(6)}" for key in hashes}
    try:
        counts = _fill(redis, {temps[key]: items for key, items in hashes.items()})
        pipe = redis.pipeline(transaction=True)
        for key, count in zip(hashes, counts, strict=True):
            if count:
                pipe.rename(temps[key], key)
                pipe.persist(key)  # RENAME keeps the temporary key's expiry
            else:
                pipe.delete(key)  # RENAME of a missing key fails; an empty hash is no key
        if also is not None:
            also(pipe)
        pipe.execute()
    except BaseException:
        redis.delete(*temps.values())
        raise
    return counts


def _fill(redis: Redis, hashes: Mapping[str, Iterable[tuple[str, bytes]]]) -> list[int]:
    """Fill each (temporary) hash chunk by chunk; returns each one's field count.

    Every chunk is sent without waiting for its reply, so Redis stores one chunk while this
    process encodes the next; the replies (small integers) are read once all are sent.
    """
    sha = redis.script_load(_FILL_SCRIPT)
    pool = redis.connection_pool
    conn = pool.get_connection()
    sent, counts = 0, []
    try:
        for key, items in hashes.items():
            count = 0
            for chunk in chunks(items):
                packed = _fill_args(chunk)
                if packed is not None:
                    conn.send_command("EVALSHA", sha, 1, key, packed, TEMP_TTL_SECONDS)  # type: ignore[no-untyped-call]
                    sent += 1
                else:
                    fields = [part for pair in chunk.items() for part in pair]
                    conn.send_command("HSET", key, *fields)  # type: ignore[no-untyped-call]
                    conn.send_command("EXPIRE", key, TEMP_TTL_SECONDS)  # type: ignore[no-untyped-call]
                    sent += 2
                count += len(chunk)
            counts.append(count)
        errors = []
        for _ in range(sent):
            try:
                conn.read_response()
            except ResponseError as exc:  # read every reply, so the connection stays in step
                errors.append(exc)
        if errors:
            raise errors[0]
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread
        raise
    finally:
        pool.release(conn)
    return counts


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
