"""Rich-notification certificates of a tenant, with their private keys sealed.

- `pb:tenant:{t}:certs` hash: certificate id -> JSON `CertificateRecord` (the key sealed by
  `core.certificates`; this module never sees it in plaintext).
- `pb:tenant:{t}:cert-current` string: the id new subscriptions and renewals name.

The clock writes them (subscriptions/); workers read the keys to decrypt notifications.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from redis import Redis

from core.state._private import dumps, loads, number, tenant_key, text

# Graph retries a delivery for up to 4 hours, so a retired key may still be needed that long
# after the last subscription stopped naming it.
RETIRED_KEY_KEPT_SECONDS = 5 * 3600.0


def certificates_key(tenant: str) -> str:
    return tenant_key(tenant, "certs")


def current_key(tenant: str) -> str:
    return tenant_key(tenant, "cert-current")


@dataclass(frozen=True)
class CertificateRecord:
    sealed_key: str  # the PEM private key, sealed with the cache key
    certificate_b64: str  # DER, base64: what Graph's `encryptionCertificate` takes
    created_at: float = 0.0
    retired_at: float | None = None  # when another one became current

    def to_bytes(self) -> bytes:
        return dumps({"key": self.sealed_key, "certificate": self.certificate_b64,
                      "created_at": self.created_at, "retired_at": self.retired_at})  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> CertificateRecord:
        data = loads(raw)
        if not isinstance(data, dict):
            data = {}
        return cls(
            sealed_key=str(data.get("key", "")),
            certificate_b64=str(data.get("certificate", "")),
            created_at=number(data.get("created_at")) or 0.0,
            retired_at=number(data.get("retired_at")),
        )


def read(redis: Redis, tenant: str, certificate_id: str) -> CertificateRecord | None:
    raw = redis.hget(certificates_key(tenant), certificate_id)
    return None if raw is None else CertificateRecord.from_bytes(raw)


def read_all(redis: Redis, tenant: str) -> dict[str, CertificateRecord]:
    """Every stored certificate by id (a notification names the one it used)."""
    raw: dict[bytes, bytes] = redis.hgetall(certificates_key(tenant))  # type: ignore[assignment]
    return {text(cid): CertificateRecord.from_bytes(v) for cid, v in raw.items()}


def certificate_ids(redis: Redis, tenant: str) -> list[str]:
    return sorted(text(k) for k in redis.hkeys(certificates_key(tenant)))


def current(redis: Redis, tenant: str) -> tuple[str, CertificateRecord] | None:
    """The current certificate's id and record, if it has one."""
    cid = redis.get(current_key(tenant))
    if cid is None:
        return None
    record = read(redis, tenant, text(cid))
    return None if record is None else (text(cid), record)


def add(redis: Redis, tenant: str, certificate_id: str, record: CertificateRecord) -> None:
    """Store a new certificate and make it current; the old current one is retired then."""
    old = current(redis, tenant)
    pipe = redis.pipeline(transaction=True)
    pipe.hset(certificates_key(tenant), certificate_id, record.to_bytes())
    pipe.set(current_key(tenant), certificate_id)
    if old is not None and old[0] != certificate_id:
        retired = replace(old[1], retired_at=record.created_at)
        pipe.hset(certificates_key(tenant), old[0], retired.to_bytes())
    pipe.execute()


def prune(
    redis: Redis,
    tenant: str,
    in_use: Iterable[str],
    now: float,
    kept_seconds: float = RETIRED_KEY_KEPT_SECONDS,
) -> list[str]:
    """Drop retired keys no subscription names any more, once Graph's retries are over."""
    named = set(in_use)
    stored = read_all(redis, tenant)
    cid = redis.get(current_key(tenant))
    now_current = text(cid) if cid is not None else None
    dropped = sorted(
        c
        for c, r in stored.items()
        if c != now_current and c not in named and r.retired_at is not None
        and now - r.retired_at >= kept_seconds
    )  # fmt: skip
    if dropped:
        redis.hdel(certificates_key(tenant), *dropped)
    return dropped
