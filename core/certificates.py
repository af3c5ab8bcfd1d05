"""Private keys of the rich-notification certificates, kept in Redis encrypted at rest.

The clock creates a key per subscription certificate; workers decrypt notifications with
it. Old keys stay until no notification can reference them (rotation)."""

from __future__ import annotations

import time

import orjson
from redis import Redis

from core import keys
from core.token_cache import CacheCipher

KEEP_RETIRED_SECONDS = 4 * 3600 + 600  # Graph retries a notification for up to 4 hours


def _key(tenant: str) -> str:
    return keys.PREFIX + f"tenant:{tenant}:certificates"


def store(
    redis: Redis, cipher: CacheCipher, tenant: str, certificate_id: str, private_key_pem: bytes
) -> None:
    record = {
        "key": cipher.encrypt(private_key_pem).decode(),
        "created": time.time(),
        "retired": None,
    }
    redis.hset(_key(tenant), certificate_id, orjson.dumps(record))


def retire(redis: Redis, tenant: str, certificate_id: str, now: float | None = None) -> None:
    raw = redis.hget(_key(tenant), certificate_id)
    if raw:
        record = orjson.loads(raw)
        record["retired"] = time.time() if now is None else now
        redis.hset(_key(tenant), certificate_id, orjson.dumps(record))


def private_keys(redis: Redis, cipher: CacheCipher, tenant: str) -> dict[str, bytes]:
    out = {}
    for cert_id, raw in redis.hgetall(_key(tenant)).items():
        record = orjson.loads(raw)
        pem, _ = cipher.decrypt(record["key"].encode(), "a notification certificate key")
        out[cert_id.decode()] = pem
    return out


def purge_retired(redis: Redis, tenant: str, now: float | None = None) -> int:
    now = time.time() if now is None else now
    gone = [
        cid
        for cid, raw in redis.hgetall(_key(tenant)).items()
        if (r := orjson.loads(raw))["retired"] and now - r["retired"] > KEEP_RETIRED_SECONDS
    ]
    if gone:
        redis.hdel(_key(tenant), *gone)
    return len(gone)
