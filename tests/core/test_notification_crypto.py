"""Decrypting rich notifications and validating their tokens, each rule broken on its own."""

# Graph mandates SHA-1 for the OAEP key wrap and the certificate thumbprint.
# ruff: noqa: S303, S324

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.errors import BridgeError
from core.notification_crypto import (
    GRAPH_CHANGE_TRACKING_APP_ID,
    NotificationRejected,
    RejectReason,
    decrypt_content,
    generate_encryption_certificate,
    issuers_for,
    validate_tokens,
)
from emulator.crypto import encrypt_resource

PRESENCE = {
    "@odata.type": "#microsoft.graph.presence",
    "@odata.id": "users/u-1/presence",
    "id": "u-1",
    "availability": "DoNotDisturb",
    "activity": "Presenting",
}
TENANT = "11111111-2222-3333-4444-555555555555"
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
NOW = 1_700_000_000.0
EMULATOR_BASE = "https://127.0.0.1:8443"


@pytest.fixture(scope="module")
def certificate() -> tuple[bytes, str, str]:
    return generate_encryption_certificate()


@pytest.fixture(scope="module")
def content(certificate: tuple[bytes, str, str]) -> dict[str, str]:
    return encrypt_resource(PRESENCE, certificate[1], "cert-1")


# ---- decryption -------------------------------------------------------------------------------


def decrypt_rejection(content: dict[str, str], private_keys: dict[str, bytes]) -> RejectReason:
    with pytest.raises(NotificationRejected) as caught:
        decrypt_content(content, private_keys)
    return caught.value.reason


def test_decrypts_graph_content(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    assert decrypt_content(content, {"cert-1": certificate[0]}) == PRESENCE


def test_chooses_key_by_certificate_id(certificate: tuple[bytes, str, str]) -> None:
    old_pem, _, _ = generate_encryption_certificate("old")
    content = encrypt_resource(PRESENCE, certificate[1], "new")
    assert decrypt_content(content, {"old": old_pem, "new": certificate[0]}) == PRESENCE


def test_unknown_certificate_id_is_rejected(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    assert decrypt_rejection(content, {"another": certificate[0]}) is RejectReason.UNKNOWN_KEY


def test_wrong_private_key_is_rejected(content: dict[str, str]) -> None:
    other_pem, _, _ = generate_encryption_certificate("other")
    assert decrypt_rejection(content, {"cert-1": other_pem}) is RejectReason.BAD_KEY


@pytest.mark.parametrize("field", ["data", "dataKey", "dataSignature", "encryptionCertificateId"])
def test_missing_field_is_rejected(
    certificate: tuple[bytes, str, str], content: dict[str, str], field: str
) -> None:
    broken = {k: v for k, v in content.items() if k != field}
    assert decrypt_rejection(broken, {"cert-1": certificate[0]}) is RejectReason.MISSING_FIELD


def test_non_base64_field_is_rejected(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    broken = {**content, "data": "not*base64!"}
    assert decrypt_rejection(broken, {"cert-1": certificate[0]}) is RejectReason.BAD_ENCODING


def test_tampered_ciphertext_fails_signature(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    data = bytearray(base64.b64decode(content["data"]))
    data[-1] ^= 0x01
    tampered = {**content, "data": base64.b64encode(bytes(data)).decode()}
    assert decrypt_rejection(tampered, {"cert-1": certificate[0]}) is RejectReason.BAD_SIGNATURE


def test_signature_from_another_key_is_rejected(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    forged = hmac.new(os.urandom(32), base64.b64decode(content["data"]), hashlib.sha256).digest()
    forged_content = {**content, "dataSignature": base64.b64encode(forged).decode()}
    assert (
        decrypt_rejection(forged_content, {"cert-1": certificate[0]}) is RejectReason.BAD_SIGNATURE
    )


def seal(plaintext: bytes, cert_b64: str, *, pad: bool = True) -> dict[str, str]:
    """Encrypt arbitrary bytes the Graph way (validly signed), to reach checks after the HMAC."""
    key = os.urandom(32)
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plaintext) + encryptor.finalize()
    public_key = x509.load_der_x509_certificate(base64.b64decode(cert_b64)).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    wrapped = public_key.encrypt(
        key, asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    )
    return {
        "data": base64.b64encode(data).decode(),
        "dataKey": base64.b64encode(wrapped).decode(),
        "dataSignature": base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode(),
        "encryptionCertificateId": "cert-1",
        "encryptionCertificateThumbprint": "",
    }


@pytest.mark.parametrize(
    ("plaintext", "pad", "reason"),
    [
        (b"\x00" * 16, False, RejectReason.BAD_PADDING),
        (b"not json at all", True, RejectReason.BAD_JSON),
        (b"\xff\xfe", True, RejectReason.BAD_JSON),
        (b"[1, 2]", True, RejectReason.BAD_JSON),
    ],
    ids=["bad-padding", "not-json", "not-utf8", "not-an-object"],
)
def test_signed_but_malformed_plaintext_is_rejected(
    certificate: tuple[bytes, str, str], plaintext: bytes, pad: bool, reason: RejectReason
) -> None:
    sealed = seal(plaintext, certificate[1], pad=pad)
    assert decrypt_rejection(sealed, {"cert-1": certificate[0]}) is reason


def test_rejection_is_a_permanent_bridge_error_without_secrets(
    certificate: tuple[bytes, str, str], content: dict[str, str]
) -> None:
    data = bytearray(base64.b64decode(content["data"]))
    data[0] ^= 0x80
    with pytest.raises(NotificationRejected) as caught:
        decrypt_content(
            {**content, "data": base64.b64encode(bytes(data)).decode()}, {"cert-1": certificate[0]}
        )
    error = caught.value
    assert isinstance(error, BridgeError)
    assert error.transient is False
    text = str(error) + repr(error)
    for secret in (content["dataKey"], content["dataSignature"], content["data"][:24]):
        assert secret not in text
    assert "PRIVATE KEY" not in text


# ---- validation tokens -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(signing_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    return {"keys": [{**jwk, "kid": "key-1", "use": "sig"}]}


def good_claims() -> dict[str, Any]:
    return {
        "aud": APP_ID,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": int(NOW) - 60,
        "nbf": int(NOW) - 60,
        "exp": int(NOW) + 86_400,
        "appid": GRAPH_CHANGE_TRACKING_APP_ID,
        "tid": TENANT,
        "ver": "1.0",
    }


MintToken = Callable[..., str]


@pytest.fixture
def mint(signing_key: rsa.RSAPrivateKey) -> MintToken:
    def build(claims: dict[str, Any] | None = None, *, kid: str = "key-1", key: Any = None) -> str:
        return jwt.encode(
            claims if claims is not None else good_claims(),
            key if key is not None else signing_key,
            algorithm="RS256",
            headers={"kid": kid},
        )

    return build


def check(tokens: list[str] | None, jwks: dict[str, Any]) -> None:
    validate_tokens(
        tokens,
        jwks=jwks,
        app_ids={APP_ID, "another-app"},
        tenant_id=TENANT,
        now=NOW,
        issuers=issuers_for(EMULATOR_BASE),
    )


def rejection(tokens: list[str] | None, jwks: dict[str, Any]) -> RejectReason:
    with pytest.raises(NotificationRejected) as caught:
        check(tokens, jwks)
    return caught.value.reason


def test_good_v1_token_passes(mint: MintToken, jwks: dict[str, Any]) -> None:
    check([mint()], jwks)


def test_good_v2_token_from_configured_login_base_passes(
    mint: MintToken, jwks: dict[str, Any]
) -> None:
    claims = {k: v for k, v in good_claims().items() if k != "appid"}
    claims |= {
        "ver": "2.0",
        "azp": GRAPH_CHANGE_TRACKING_APP_ID,
        "iss": f"{EMULATOR_BASE}/{TENANT}/v2.0",
    }
    check([mint(claims)], jwks)


def test_microsoft_v2_issuer_is_accepted_by_default(mint: MintToken, jwks: dict[str, Any]) -> None:
    claims = good_claims() | {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0"}
    validate_tokens([mint(claims)], jwks=jwks, app_ids={APP_ID}, tenant_id=TENANT, now=NOW)


@pytest.mark.parametrize("tokens", [None, []], ids=["null", "empty"])
def test_missing_tokens_are_rejected(tokens: list[str] | None, jwks: dict[str, Any]) -> None:
    assert rejection(tokens, jwks) is RejectReason.MISSING_TOKENS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exp": int(NOW) - 301}, RejectReason.TOKEN_EXPIRED),
        ({"exp": None}, RejectReason.TOKEN_EXPIRED),
        ({"nbf": int(NOW) + 301}, RejectReason.TOKEN_NOT_YET_VALID),
        ({"aud": "someone-else"}, RejectReason.TOKEN_AUDIENCE),
        ({"aud": None}, RejectReason.TOKEN_AUDIENCE),
        ({"appid": "00000000-0000-0000-0000-000000000000"}, RejectReason.TOKEN_PUBLISHER),
        ({"appid": None}, RejectReason.TOKEN_PUBLISHER),
        ({"ver": "2.0", "azp": APP_ID}, RejectReason.TOKEN_PUBLISHER),
        ({"tid": "99999999-2222-3333-4444-555555555555"}, RejectReason.TOKEN_TENANT),
        (
            {"iss": "https://sts.windows.net/99999999-2222-3333-4444-555555555555/"},
            RejectReason.TOKEN_ISSUER,
        ),
        ({"iss": f"https://evil.example/{TENANT}/v2.0"}, RejectReason.TOKEN_ISSUER),
    ],
    ids=[
        "expired",
        "no-exp",
        "not-yet-valid",
        "wrong-audience",
        "no-audience",
        "wrong-publisher",
        "no-publisher",
        "v2-azp-not-graph",
        "other-tenant",
        "issuer-other-tenant",
        "issuer-unknown-base",
    ],
)
def test_token_breaking_one_rule_is_rejected(
    mint: MintToken, jwks: dict[str, Any], change: dict[str, Any], reason: RejectReason
) -> None:
    claims = {k: v for k, v in (good_claims() | change).items() if v is not None}
    assert rejection([mint(claims)], jwks) is reason


@pytest.mark.parametrize(
    "change", [{"exp": int(NOW) - 299}, {"nbf": int(NOW) + 299}], ids=["exp", "nbf"]
)
def test_clock_skew_within_leeway_passes(
    mint: MintToken, jwks: dict[str, Any], change: dict[str, Any]
) -> None:
    check([mint(good_claims() | change)], jwks)


def test_audience_list_containing_our_app_passes(mint: MintToken, jwks: dict[str, Any]) -> None:
    check([mint(good_claims() | {"aud": ["other", APP_ID]})], jwks)


def test_signature_by_unknown_key_is_rejected(mint: MintToken, jwks: dict[str, Any]) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert rejection([mint(key=impostor)], jwks) is RejectReason.TOKEN_SIGNATURE


def test_unknown_kid_is_rejected(mint: MintToken, jwks: dict[str, Any]) -> None:
    assert rejection([mint(kid="key-2")], jwks) is RejectReason.TOKEN_UNKNOWN_SIGNING_KEY


def test_symmetric_algorithm_is_rejected(jwks: dict[str, Any]) -> None:
    token = jwt.encode(good_claims(), "k" * 32, algorithm="HS256", headers={"kid": "key-1"})
    assert rejection([token], jwks) is RejectReason.TOKEN_MALFORMED


def test_garbage_token_is_rejected(jwks: dict[str, Any]) -> None:
    assert rejection(["not.a.jwt"], jwks) is RejectReason.TOKEN_MALFORMED


def test_every_token_is_checked(mint: MintToken, jwks: dict[str, Any]) -> None:
    bad = mint(good_claims() | {"aud": "someone-else"})
    assert rejection([mint(), mint(), bad], jwks) is RejectReason.TOKEN_AUDIENCE
