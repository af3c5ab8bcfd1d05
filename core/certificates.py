"""Rich-notification certificates: public part for Graph, private key encrypted at rest.

The clock creates and rotates them (subscriptions/); workers decrypt notifications with the
private keys. Old keys stay until no notification can name them any more."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis import Redis

from core import keys
from core.token_cache import CacheCipher

certificates_key = keys.certificates


# Graph retries a delivery for up to 4 hours, so a retired key may still be needed that long
# after the last subscription stopped naming it.
RETIRED_KEY_KEPT_SECONDS = 5 * 3600.0


current_certificate_key = keys.current_certificate


@dataclass(frozen=True)
class Certificate:
    certificate_id: str
    certificate_b64: str  # DER, base64: what Graph's `encryptionCertificate` takes
    created_at: float


def current_certificate(redis: Redis, tenant: str) -> Certificate | None:
    cid = redis.get(current_certificate_key(tenant))
    if cid is None:
        return None
    raw = redis.hget(certificates_key(tenant), cid)
    if raw is None:
        return None
    entry = orjson.loads(raw)
    return Certificate(cid.decode(), entry["certificate"], float(entry["created_at"]))  # type: ignore[union-attr]


def add_certificate(
    redis: Redis, cipher: CacheCipher, tenant: str, certificate: Certificate, private_pem: bytes
) -> None:
    """Store a new certificate (its key encrypted) and make it current; retire the old one."""
    old = current_certificate(redis, tenant)
    entry = {
        "key": cipher.encrypt(private_pem).decode(),
        "certificate": certificate.certificate_b64,
        "created_at": certificate.created_at,
        "retired_at": None,
    }
    pipe = redis.pipeline()
    pipe.hset(certificates_key(tenant), certificate.certificate_id, orjson.dumps(entry))
    pipe.set(current_certificate_key(tenant), certificate.certificate_id)
    pipe.execute()
    if old is not None:
        raw = redis.hget(certificates_key(tenant), old.certificate_id)
        if raw is not None:
            retired = orjson.loads(raw)
            retired["retired_at"] = certificate.created_at
            redis.hset(certificates_key(tenant), old.certificate_id, orjson.dumps(retired))


def private_key(
    redis: Redis, cipher: CacheCipher, tenant: str, certificate_id: str
) -> bytes | None:
    """The PEM private key of a certificate, to decrypt notifications that name it."""
    raw = redis.hget(certificates_key(tenant), certificate_id)
    if raw is None:
        return None
    sealed = orjson.loads(raw)["key"].encode()
    plaintext, _ = cipher.decrypt(sealed, f"notification key {certificate_id}")
    return plaintext


def certificate_ids(redis: Redis, tenant: str) -> list[str]:
    return sorted(k.decode() for k in redis.hkeys(certificates_key(tenant)))  # type: ignore[union-attr]


def prune_certificates(redis: Redis, tenant: str, in_use: set[str], now: float) -> list[str]:
    """Drop retired keys no subscription names any more, once Graph's retries are over."""
    raw: dict[bytes, bytes] = redis.hgetall(certificates_key(tenant))  # type: ignore[assignment]
    current = redis.get(current_certificate_key(tenant))
    dropped = []
    for cid, value in raw.items():
        entry = orjson.loads(value)
        retired_at = entry.get("retired_at")
        if cid == current or cid.decode() in in_use or retired_at is None:
            continue
        if now - float(retired_at) >= RETIRED_KEY_KEPT_SECONDS:
            dropped.append(cid.decode())
    if dropped:
        redis.hdel(certificates_key(tenant), *dropped)
    return dropped


def private_keys(redis: Redis, cipher: CacheCipher, tenant: str) -> dict[str, bytes]:
    """Every stored private key by certificate id (a notification names the one it used)."""
    out: dict[str, bytes] = {}
    for cid, raw in redis.hgetall(certificates_key(tenant)).items():
        name = cid.decode() if isinstance(cid, bytes) else str(cid)
        sealed = orjson.loads(raw)["key"].encode()
        out[name], _ = cipher.decrypt(sealed, f"notification key {name}")
    return out
