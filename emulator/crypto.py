"""Graph's side of rich notifications: encrypt a resource to a subscriber's certificate.

Mirrors Microsoft's documented `encryptedContent`: a fresh 32-byte AES key per item, AES-256-CBC
with IV = the key's first 16 bytes and PKCS7, the key wrapped with RSA-OAEP (SHA-1, MGF1-SHA-1),
and an HMAC-SHA256 of the raw ciphertext under the AES key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.notification_crypto import certificate_thumbprint, generate_encryption_certificate

_OAEP_SHA1 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 - Graph's documented key wrap
    algorithm=hashes.SHA1(),  # noqa: S303
    label=None,
)


def make_certificate(
    common_name: str = "presence-bridge", bits: int = 2048
) -> tuple[bytes, str, str]:
    """(private key PEM, base64 DER certificate, upper-case SHA-1 thumbprint)."""
    return generate_encryption_certificate(common_name, bits)


def encrypt_resource(
    resource: dict[str, Any], certificate_b64_der: str, certificate_id: str
) -> dict[str, str]:
    """Build the `encryptedContent` object Graph puts on a rich notification."""
    public_key, thumbprint = _load_certificate(certificate_b64_der)
    key = os.urandom(32)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    plain = json.dumps(resource, separators=(",", ":")).encode("utf-8")
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return {
        "data": base64.b64encode(ciphertext).decode("ascii"),
        "dataSignature": base64.b64encode(
            hmac.new(key, ciphertext, hashlib.sha256).digest()
        ).decode("ascii"),
        "dataKey": base64.b64encode(public_key.encrypt(key, _OAEP_SHA1)).decode("ascii"),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": thumbprint,
    }


@functools.lru_cache(maxsize=256)
def _load_certificate(certificate_b64_der: str) -> tuple[rsa.RSAPublicKey, str]:
    # Subscribers keep one certificate for many deliveries; parse it once.
    der = base64.b64decode(certificate_b64_der)
    public_key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("encryption certificate must carry an RSA public key")
    return public_key, certificate_thumbprint(der)
