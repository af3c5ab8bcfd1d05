"""Rich-notification certificates: public part for Graph, private key encrypted at rest.

The clock creates and rotates them (subscriptions/); workers decrypt notifications with the
private keys. The records and their retention are `core.state.certificates`; this module seals
and unseals the keys."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from core.cipher import CacheCipher
from core.state import certificates as cert_state
from core.state.certificates import CertificateRecord


@dataclass(frozen=True)
class Certificate:
    certificate_id: str
    certificate_b64: str  # DER, base64: what Graph's `encryptionCertificate` takes
    created_at: float


def current_certificate(redis: Redis, tenant: str) -> Certificate | None:
    found = cert_state.current(redis, tenant)
    if found is None:
        return None
    cid, record = found
    return Certificate(cid, record.certificate_b64, record.created_at)


def add_certificate(
    redis: Redis, cipher: CacheCipher, tenant: str, certificate: Certificate, private_pem: bytes
) -> None:
    """Store a new certificate (its key encrypted) and make it current; retire the old one."""
    record = CertificateRecord(
        cipher.encrypt(private_pem).decode(), certificate.certificate_b64, certificate.created_at
    )
    cert_state.add(redis, tenant, certificate.certificate_id, record)


def _unseal(cipher: CacheCipher, certificate_id: str, record: CertificateRecord) -> bytes:
    plaintext, _ = cipher.decrypt(record.sealed_key.encode(), f"notification key {certificate_id}")
    return plaintext


def private_key(
    redis: Redis, cipher: CacheCipher, tenant: str, certificate_id: str
) -> bytes | None:
    """The PEM private key of a certificate, to decrypt notifications that name it."""
    record = cert_state.read(redis, tenant, certificate_id)
    return None if record is None else _unseal(cipher, certificate_id, record)


def private_keys(redis: Redis, cipher: CacheCipher, tenant: str) -> dict[str, bytes]:
    """Every stored private key by certificate id (a notification names the one it used)."""
    return {
        cid: _unseal(cipher, cid, record)
        for cid, record in cert_state.read_all(redis, tenant).items()
    }
