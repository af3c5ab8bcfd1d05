"""Redis records of the subscriptions the clock holds, per tenant and service account.

The webhook-facing part (tenant and clientState digest under `keys.subscription(id)`) is
written through `core.subscription_registry`; this module adds the account, the users, the
expiry and the certificate to the same hash, plus an account -> subscription index. The
private keys of rich notifications are kept only Fernet-encrypted with the process cache key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from core import keys, subscription_registry
from core.state import links

# Old names of two keys, still read by tests/core/test_status.py.
backoff_key = keys.subscription_backoff
status_key = keys.subscription_status


@dataclass(frozen=True)
class Record:
    subscription_id: str
    tenant: str
    account: str
    user_ids: tuple[str, ...]
    expires_at: float
    created_at: float
    renewed_at: float
    certificate_id: str | None = None

    def fields(self) -> dict[str, str]:
        out = {
            "account": self.account,
            "users": orjson.dumps(list(self.user_ids)).decode(),
            "expires_at": repr(self.expires_at),
            "created_at": repr(self.created_at),
            "renewed_at": repr(self.renewed_at),
        }
        if self.certificate_id:
            out["certificate_id"] = self.certificate_id
        return out


def _record(subscription_id: str, raw: Mapping[bytes, bytes]) -> Record | None:
    if b"account" not in raw or b"tenant" not in raw:
        return None  # registered by something else (or half-written): not ours to manage
    cert = raw.get(b"certificate_id")
    return Record(
        subscription_id=subscription_id,
        tenant=raw[b"tenant"].decode(),
        account=raw[b"account"].decode(),
        user_ids=tuple(orjson.loads(raw.get(b"users", b"[]"))),
        expires_at=float(raw.get(b"expires_at", b"0")),
        created_at=float(raw.get(b"created_at", b"0")),
        renewed_at=float(raw.get(b"renewed_at", b"0")),
        certificate_id=cert.decode() if cert else None,
    )


def save(redis: Redis, record: Record, client_state: str | None = None) -> None:
    """Store a record; with `client_state`, (re)register it so the webhook accepts it."""
    if client_state is not None:
        subscription_registry.register(
            redis, record.subscription_id, record.tenant, client_state, **record.fields()
        )
    else:
        fields = record.fields()
        redis.hset(keys.subscription(record.subscription_id), mapping=fields)  # type: ignore[arg-type]
    redis.hset(keys.subscription_accounts(record.tenant), record.account, record.subscription_id)


def load(redis: Redis, tenant: str) -> dict[str, Record]:
    """The recorded subscription of each account of the tenant."""
    index: dict[bytes, bytes] = redis.hgetall(keys.subscription_accounts(tenant))  # type: ignore[assignment]
    if not index:
        return {}
    pipe = redis.pipeline(transaction=False)
    for sid in index.values():
        pipe.hgetall(keys.subscription(sid.decode()))
    out: dict[str, Record] = {}
    for (account, sid), raw in zip(index.items(), pipe.execute(), strict=True):
        record = _record(sid.decode(), raw)
        if record is not None and record.account == account.decode():
            out[record.account] = record
    return out


def by_id(redis: Redis, subscription_id: str) -> Record | None:
    raw: dict[bytes, bytes] = redis.hgetall(keys.subscription(subscription_id))  # type: ignore[assignment]
    return _record(subscription_id, raw)


def registered_for(redis: Redis, subscription_id: str, tenant: str) -> bool:
    """True when the webhook knows this subscription's clientState for this tenant."""
    raw = redis.hmget(keys.subscription(subscription_id), "tenant", "client_state_sha256")
    return raw[0] == tenant.encode() and raw[1] is not None


def forget(redis: Redis, record: Record) -> None:
    subscription_registry.forget(redis, record.subscription_id, record.tenant)
    index = keys.subscription_accounts(record.tenant)
    if redis.hget(index, record.account) == record.subscription_id.encode():
        redis.hdel(index, record.account)


# ---- back-off of an account after 429 / 5xx ------------------------------------------------


def backoff_until(redis: Redis, tenant: str, account: str) -> float:
    raw = redis.hget(keys.subscription_backoff(tenant), account)
    return float(orjson.loads(raw)["until"]) if raw else 0.0


def backoff(redis: Redis, tenant: str, account: str, until: float, reason: str) -> int:
    """Record a back-off; returns how many failures in a row the account has had."""
    raw = redis.hget(keys.subscription_backoff(tenant), account)
    failures = int(orjson.loads(raw)["failures"]) + 1 if raw else 1
    entry = {"until": until, "failures": failures, "reason": reason}
    redis.hset(keys.subscription_backoff(tenant), account, orjson.dumps(entry))
    return failures


def failures(redis: Redis, tenant: str, account: str) -> int:
    raw = redis.hget(keys.subscription_backoff(tenant), account)
    return int(orjson.loads(raw)["failures"]) if raw else 0


def clear_backoff(redis: Redis, tenant: str, account: str) -> None:
    redis.hdel(keys.subscription_backoff(tenant), account)


# ---- status and polled users ----------------------------------------------------------------


def write_status(redis: Redis, tenant: str, status: Mapping[str, Any], polled: list[str]) -> None:
    pipe = redis.pipeline()
    pipe.set(keys.subscription_status(tenant), orjson.dumps(status))
    pipe.set(keys.polled(tenant), orjson.dumps(polled))
    pipe.execute()


def read_status(redis: Redis, tenant: str) -> dict[str, Any] | None:
    raw = redis.get(keys.subscription_status(tenant))
    return orjson.loads(raw) if raw else None


def polled_users(redis: Redis, tenant: str) -> list[str]:
    raw = redis.get(keys.polled(tenant))
    return list(orjson.loads(raw)) if raw else []


def linked_users(redis: Redis, tenant: str) -> list[str]:
    """The enabled, linked Graph users of the tenant (the directory sync writes the links)."""
    return links.linked_graph_ids(redis, tenant)

