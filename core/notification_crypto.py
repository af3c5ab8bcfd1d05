"""Rich change notifications: our certificate, decryption of `encryptedContent`, token checks.

Follows Microsoft's documented steps for `includeResourceData` subscriptions: RSA-OAEP (SHA-1,
MGF1-SHA-1) unwraps a per-item AES key, HMAC-SHA256 over the raw ciphertext is checked in constant
time before anything is decrypted, then AES-CBC with IV = the key's first 16 bytes and PKCS7.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
from collections.abc import Collection, Mapping, Sequence
from enum import StrEnum, auto
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from core.errors import BridgeError

# Microsoft Graph Change Tracking: the publisher every validation token must name (azp / appid).
GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
# Issuer templates; `{tid}` is the notification's tenant. v1 tokens use sts.windows.net.
MICROSOFT_LOGIN_BASE = "https://login.microsoftonline.com"
V1_ISSUER_TEMPLATE = "https://sts.windows.net/{tid}/"
TOKEN_LEEWAY_SECONDS = 300.0
# Graph accepts 2,048-4,096-bit RSA encryption certificates.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096

_OAEP_SHA1 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 - Graph's documented key wrap
    algorithm=hashes.SHA1(),  # noqa: S303
    label=None,
)
_AES_KEY_SIZES = (16, 24, 32)


class RejectReason(StrEnum):
    MISSING_FIELD = auto()
    UNKNOWN_KEY = auto()
    BAD_ENCODING = auto()
    BAD_KEY = auto()
    BAD_SIGNATURE = auto()
    BAD_PADDING = auto()
    BAD_JSON = auto()
    MISSING_TOKENS = auto()
    TOKEN_MALFORMED = auto()
    TOKEN_UNKNOWN_SIGNING_KEY = auto()
    TOKEN_SIGNATURE = auto()
    TOKEN_EXPIRED = auto()
    TOKEN_NOT_YET_VALID = auto()
    TOKEN_AUDIENCE = auto()
    TOKEN_PUBLISHER = auto()
    TOKEN_TENANT = auto()
    TOKEN_ISSUER = auto()


class NotificationRejected(BridgeError):
    """A rich notification failed a check; the message names the rule, never key material."""

    status_code = 400
    transient = False

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(
            f"notification rejected: {reason.value}" + (f" ({detail})" if detail else "")
        )


def generate_encryption_certificate(
    common_name: str = "presence-bridge",
    bits: int = 2048,
    *,
    valid_days: int = 365,
    not_before: dt.datetime | None = None,
) -> tuple[bytes, str, str]:
    """Self-signed RSA certificate: (private key PEM, base64 DER certificate, SHA-1 thumbprint)."""
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise ValueError(f"RSA key size must be {MIN_RSA_BITS}-{MAX_RSA_BITS} bits, got {bits}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, base64.b64encode(der).decode("ascii"), certificate_thumbprint(der)


def certificate_thumbprint(der: bytes) -> str:
    """Graph's `encryptionCertificateThumbprint`: upper-case hex SHA-1 of the DER certificate."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - a fingerprint, not a security hash


@functools.lru_cache(maxsize=64)
def _load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    # Parsing a PEM RSA key costs milliseconds; notifications reuse a handful of keys.
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("encryption key is not an RSA private key")
    return key


def _b64(encrypted: Mapping[str, Any], name: str) -> bytes:
    value = encrypted.get(name)
    if not isinstance(value, str) or not value:
        raise NotificationRejected(RejectReason.MISSING_FIELD, name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NotificationRejected(RejectReason.BAD_ENCODING, name) from None


def decrypt_content(
    encrypted: Mapping[str, Any], private_keys: Mapping[str, bytes]
) -> dict[str, Any]:
    """Open one `encryptedContent`; the key is chosen by `encryptionCertificateId`."""
    cert_id = encrypted.get("encryptionCertificateId")
    if not isinstance(cert_id, str) or not cert_id:
        raise NotificationRejected(RejectReason.MISSING_FIELD, "encryptionCertificateId")
    data = _b64(encrypted, "data")
    wrapped_key = _b64(encrypted, "dataKey")
    signature = _b64(encrypted, "dataSignature")
    pem = private_keys.get(cert_id)
    if pem is None:
        raise NotificationRejected(RejectReason.UNKNOWN_KEY)
    try:
        key = _load_private_key(pem).decrypt(wrapped_key, _OAEP_SHA1)
    except ValueError:
        raise NotificationRejected(RejectReason.BAD_KEY) from None
    if len(key) not in _AES_KEY_SIZES:
        raise NotificationRejected(RejectReason.BAD_KEY)
    # Integrity before decryption: a tampered ciphertext is never fed to the padding oracle.
    expected = hmac.new(key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise NotificationRejected(RejectReason.BAD_SIGNATURE)
    if not data or len(data) % 16:
        raise NotificationRejected(RejectReason.BAD_PADDING)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise NotificationRejected(RejectReason.BAD_PADDING) from None
    try:
        resource = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotificationRejected(RejectReason.BAD_JSON) from None
    if not isinstance(resource, dict):
        raise NotificationRejected(RejectReason.BAD_JSON, "not an object")
    return resource


def issuers_for(login_base: str = MICROSOFT_LOGIN_BASE) -> tuple[str, ...]:
    """Accepted issuer templates for an identity platform base (Microsoft's or the emulator's)."""
    return (V1_ISSUER_TEMPLATE, f"{login_base.rstrip('/')}/{{tid}}/v2.0")


DEFAULT_ISSUERS = issuers_for()


def validate_tokens(
    tokens: Sequence[str] | None,
    *,
    jwks: Mapping[str, Any],
    app_ids: Collection[str],
    tenant_id: str,
    now: float,
    issuers: Sequence[str] = DEFAULT_ISSUERS,
    leeway: float = TOKEN_LEEWAY_SECONDS,
) -> None:
    """Check every `validationTokens` JWT; raise `NotificationRejected` on the first failure."""
    if not tokens:
        raise NotificationRejected(RejectReason.MISSING_TOKENS)
    keys = _keys_by_kid(jwks)
    accepted_issuers = {template.format(tid=tenant_id) for template in issuers}
    for token in tokens:
        claims = _verified_claims(token, keys)
        _check_claims(claims, app_ids, tenant_id, accepted_issuers, now, leeway)


def _keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for entry in jwks.get("keys", []):
        kid = entry.get("kid")
        if isinstance(kid, str) and entry.get("kty") == "RSA":
            keys[kid] = entry
    return keys


def _verified_claims(token: Any, keys: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(token, str):
        raise NotificationRejected(RejectReason.TOKEN_MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise NotificationRejected(RejectReason.TOKEN_MALFORMED) from None
    jwk = keys.get(header.get("kid", ""))
    if jwk is None:
        raise NotificationRejected(RejectReason.TOKEN_UNKNOWN_SIGNING_KEY)
    try:
        key = jwt.PyJWK(dict(jwk), algorithm="RS256").key
        # Claims are checked below against the caller's `now`, so PyJWT only verifies the signature.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise NotificationRejected(RejectReason.TOKEN_SIGNATURE) from None
    except jwt.PyJWTError:
        # Wrong algorithm (e.g. HS256 or none), undecodable payload, unusable JWK.
        raise NotificationRejected(RejectReason.TOKEN_MALFORMED) from None
    return claims


def _check_claims(
    claims: Mapping[str, Any],
    app_ids: Collection[str],
    tenant_id: str,
    accepted_issuers: Collection[str],
    now: float,
    leeway: float,
) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or now > exp + leeway:
        raise NotificationRejected(RejectReason.TOKEN_EXPIRED)
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - leeway):
        raise NotificationRejected(RejectReason.TOKEN_NOT_YET_VALID)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in app_ids for a in audiences):
        raise NotificationRejected(RejectReason.TOKEN_AUDIENCE)
    if _publisher(claims) != GRAPH_CHANGE_TRACKING_APP_ID:
        raise NotificationRejected(RejectReason.TOKEN_PUBLISHER)
    if claims.get("tid") != tenant_id:
        raise NotificationRejected(RejectReason.TOKEN_TENANT)
    if claims.get("iss") not in accepted_issuers:
        raise NotificationRejected(RejectReason.TOKEN_ISSUER)


def _publisher(claims: Mapping[str, Any]) -> Any:
    # v1 tokens name the caller in `appid`, v2 in `azp`; the `ver` claim says which to trust.
    version = claims.get("ver")
    if version == "1.0":
        return claims.get("appid")
    if version == "2.0" or "azp" in claims:
        return claims.get("azp")
    return claims.get("appid")
