"""Microsoft's documented decryption of `encryptedContent`, by hand, with nothing of the project."""

# Graph mandates SHA-1 for the OAEP key wrap.
# ruff: noqa: S303

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def open_by_hand(content: dict[str, Any], private_key_pem: bytes) -> dict[str, Any]:
    """Microsoft's published decryption recipe, step by step; ValueError on a bad signature."""
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    key = private_key.decrypt(
        base64.b64decode(content["dataKey"]),
        asym_padding.OAEP(
            mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        ),
    )
    data = base64.b64decode(content["data"])
    expected = hmac.new(key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, base64.b64decode(content["dataSignature"])):
        raise ValueError("signature mismatch")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    result: dict[str, Any] = json.loads(unpadder.update(padded) + unpadder.finalize())
    return result
