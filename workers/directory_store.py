"""Redis side of the directory: the Graph users, tombstones, delta link, links and status.

Every write that readers can observe is atomic: a full import and a new links hash are built
under a temporary key and RENAMEd into place, and a delta round lands in one MULTI together
with its new delta link, so a crash mid-way leaves the previous state and link untouched
(the next round then replays the same changes, which are idempotent).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from redis import Redis

from core import keys
from core.errors import TransientError
from workers.matching import GraphUser

PREFIX = keys.PREFIX
WRITE_CHUNK = 2_000  # fields per HSET: keeps each command well inside the socket timeout
TEMP_TTL_SECONDS = 3_600  # a temporary key left by a crashed sync disappears on its own
LOCK_TTL_SECONDS = 15 * 60  # longer than a 100,000-user import; released at the end anyway
TOMBSTONE_DAYS = 30  # Entra keeps soft-deleted users restorable for 30 days
USER_FIELDS = (
    "userPrincipalName",
    "mail",
    "mailNickname",
    "onPremisesSamAccountName",
    "displayName",
)


# ---- keys (defined in core/keys.py) ---------------------------------------------------------


directory_users = keys.directory_users
directory_tombstones = keys.directory_tombstones
directory_delta_link = keys.directory_delta_link
directory_status = keys.directory_status
directory_lock = keys.directory_lock


# ---- encoding -------------------------------------------------------------------------------


def encode_user(item: Mapping[str, Any]) -> bytes:
    """Compact JSON of the fields matching uses; absent and null fields are left out."""
    return orjson.dumps({k: item[k] for k in USER_FIELDS if isinstance(item.get(k), str)})


def decode_user(graph_id: str, raw: bytes) -> GraphUser:
    # encode_user wrote only known text fields, so they go straight in (100,000 per sync).
    return GraphUser(id=graph_id, **orjson.loads(raw))


def merge_user(previous: bytes | None, item: Mapping[str, Any]) -> bytes:
    """A delta item over what we had: properties it carries win, an explicit null clears."""
    merged: dict[str, Any] = orjson.loads(previous) if previous else {}
    for name in USER_FIELDS:
        if name in item:
            merged[name] = item[name]
    return encode_user(merged)


# ---- lock -----------------------------------------------------------------------------------


class DirectoryBusy(TransientError):
    """Another sync of the same tenant is running; try again later."""


class TenantLock:
    """SET NX with expiry; released only by its holder, so an expired holder cannot free ours."""

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
        "return 0"
    )

    def __init__(self, redis: Redis, tenant: str) -> None:
        self._redis = redis
        self._key = directory_lock(tenant)
        self._token = secrets.token_hex(16)
        self._tenant = tenant

    def __enter__(self) -> TenantLock:
        if not self._redis.set(self._key, self._token, nx=True, ex=LOCK_TTL_SECONDS):
            raise DirectoryBusy(f"a directory sync of tenant {self._tenant} is already running")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._redis.eval(self._RELEASE, 1, self._key, self._token)


# ---- users ----------------------------------------------------------------------------------


def _chunks(items: Iterable[tuple[str, bytes]], size: int) -> Iterator[dict[str, bytes]]:
    chunk: dict[str, bytes] = {}
    for key, value in items:
        chunk[key] = value
        if len(chunk) >= size:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


def _temp(key: str) -> str:
    return f"{key}:tmp:{secrets.token_hex(6)}"


def write_hash_atomically(
    redis: Redis, key: str, items: Iterable[tuple[str, bytes]], extra: Mapping[str, bytes] = {}
) -> int:
    """Replace hash `key` by `items` in one step for readers; `extra` strings are SET alongside."""
    temp = _temp(key)
    count = 0
    try:
        for chunk in _chunks(items, WRITE_CHUNK):
            pipe = redis.pipeline(transaction=False)
            pipe.hset(temp, mapping=chunk)  # type: ignore[arg-type]
            pipe.expire(temp, TEMP_TTL_SECONDS)
            pipe.execute()
            count += len(chunk)
        pipe = redis.pipeline(transaction=True)
        if count:
            pipe.rename(temp, key)
            pipe.persist(key)  # RENAME keeps the temporary key's expiry
        else:
            pipe.delete(key)  # RENAME of a missing key fails; an empty hash is no key
        for name, value in extra.items():
            pipe.set(name, value)
        pipe.execute()
    except BaseException:
        redis.delete(temp)
        raise
    return count


def replace_users(
    redis: Redis, tenant: str, users: Iterable[tuple[str, bytes]], delta_link: str
) -> int:
    """Install a full import and the delta link to follow it with."""
    extra = {directory_delta_link(tenant): delta_link.encode()}
    count = write_hash_atomically(redis, directory_users(tenant), users, extra)
    # Users listed again are not deleted any more; the rest of the tombstones keep their clock.
    tombstones = directory_tombstones(tenant)
    ids = [gid.decode() for gid in redis.hkeys(tombstones)]  # type: ignore[union-attr]
    present = current_records(redis, tenant, ids)
    stale = [gid for gid, value in present.items() if value is not None]
    if stale:
        redis.hdel(tombstones, *stale)
    return count


def load_users(redis: Redis, tenant: str) -> list[GraphUser]:
    raw: dict[bytes, bytes] = redis.hgetall(directory_users(tenant))  # type: ignore[assignment]
    return [decode_user(gid.decode(), value) for gid, value in raw.items()]


def current_records(redis: Redis, tenant: str, ids: list[str]) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for start in range(0, len(ids), WRITE_CHUNK):
        part = ids[start : start + WRITE_CHUNK]
        values: list[bytes | None] = redis.hmget(directory_users(tenant), part)  # type: ignore[assignment]
        out.update(zip(part, values, strict=True))
    return out


def apply_delta(
    redis: Redis,
    tenant: str,
    upserts: Mapping[str, bytes],
    soft_deleted: Mapping[str, bytes],
    hard_deleted: Iterable[str],
    delta_link: str,
) -> None:
    """One MULTI: merged users, tombstones (value: JSON {"at", "user"}), removals, new link."""
    users, tombstones = directory_users(tenant), directory_tombstones(tenant)
    gone = list(hard_deleted)
    pipe = redis.pipeline(transaction=True)
    for chunk in _chunks(upserts.items(), WRITE_CHUNK):
        pipe.hset(users, mapping=chunk)  # type: ignore[arg-type]
        pipe.hdel(tombstones, *chunk)  # a restored user comes back as new
    for chunk in _chunks(soft_deleted.items(), WRITE_CHUNK):
        pipe.hdel(users, *chunk)
        pipe.hset(tombstones, mapping=chunk)  # type: ignore[arg-type]
    for start in range(0, len(gone), WRITE_CHUNK):
        pipe.hdel(users, *gone[start : start + WRITE_CHUNK])
        pipe.hdel(tombstones, *gone[start : start + WRITE_CHUNK])
    pipe.set(directory_delta_link(tenant), delta_link)
    pipe.execute()


def prune_tombstones(redis: Redis, tenant: str, now: float) -> int:
    """Forget soft-deleted users older than Entra's retention; returns how many are left."""
    key = directory_tombstones(tenant)
    raw: dict[bytes, bytes] = redis.hgetall(key)  # type: ignore[assignment]
    horizon = now - TOMBSTONE_DAYS * 86_400
    old = [gid for gid, value in raw.items() if float(orjson.loads(value).get("at", 0)) < horizon]
    if old:
        redis.hdel(key, *old)
    return len(raw) - len(old)


def delta_link(redis: Redis, tenant: str) -> str | None:
    raw: bytes | None = redis.get(directory_delta_link(tenant))  # type: ignore[assignment]
    return raw.decode() if raw else None


def read_status(redis: Redis, tenant: str) -> dict[str, Any] | None:
    raw: bytes | None = redis.get(directory_status(tenant))  # type: ignore[assignment]
    if not raw:
        return None
    status: dict[str, Any] = orjson.loads(raw)
    return status


def read_links(redis: Redis, tenant: str) -> dict[str, list[str]]:
    raw: dict[bytes, bytes] = redis.hgetall(keys.links(tenant))  # type: ignore[assignment]
    return {gid.decode(): list(orjson.loads(value)) for gid, value in raw.items()}


def write_links(
    redis: Redis, tenant: str, links: Mapping[str, list[str]], status: Mapping[str, Any]
) -> int:
    """Swap in the new links hash and its status record together."""
    items = ((gid, orjson.dumps(sorted(users))) for gid, users in links.items())
    extra = {directory_status(tenant): orjson.dumps(dict(status))}
    return write_hash_atomically(redis, keys.links(tenant), items, extra)


def links_count(redis: Redis, tenant: str) -> int:
    return int(redis.hlen(keys.links(tenant)))


def write_status(redis: Redis, tenant: str, status: Mapping[str, Any]) -> None:
    redis.set(directory_status(tenant), orjson.dumps(dict(status)))
