"""What the webhook needs to know of a subscription: its tenant and a digest of clientState.

The clientState itself never reaches Redis: only its SHA-256, which the webhook compares
with `hmac.compare_digest`. clientState is 128+ random bits, so the digest reveals nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis import Redis

from core import keys


@dataclass(frozen=True)
class SubscriptionRecord:
    subscription_id: str
    tenant: str
    client_state_digest: bytes


def digest(client_state: str) -> bytes:
    return hashlib.sha256(client_state.encode()).digest()


def register(
    redis: Redis, subscription_id: str, tenant: str, client_state: str, **extra: str
) -> None:
    """Record a subscription so the webhook accepts its notifications."""
    mapping: dict[bytes | bytearray | memoryview | str | int | float, bytes | str] = {
        "tenant": tenant,
        "client_state_sha256": digest(client_state),
    }
    mapping.update(extra)
    pipe = redis.pipeline()
    pipe.hset(keys.subscription(subscription_id), mapping=mapping)
    pipe.sadd(keys.tenant_subscriptions(tenant), subscription_id)
    pipe.execute()


def forget(redis: Redis, subscription_id: str, tenant: str) -> None:
    pipe = redis.pipeline()
    pipe.delete(keys.subscription(subscription_id))
    pipe.srem(keys.tenant_subscriptions(tenant), subscription_id)
    pipe.execute()


def from_hash(
    subscription_id: str, tenant: bytes | None, digest_: bytes | None
) -> SubscriptionRecord | None:
    if tenant is None or digest_ is None:
        return None
    return SubscriptionRecord(subscription_id, tenant.decode(), digest_)
