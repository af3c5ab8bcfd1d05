"""The emulator's `encryptedContent` opens with Microsoft's documented steps, done by hand here."""

# Graph mandates SHA-1 for the OAEP key wrap and the certificate thumbprint.
# ruff: noqa: S303, S324

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.crypto import encrypt_resource, make_certificate
from tests.emulator.decryption import open_by_hand

PRESENCE = {
    "@odata.type": "#microsoft.graph.presence",
    "@odata.id": "users/5f4e-user/presence",
    "id": "5f4e-user",
    "availability": "Busy",
    "activity": "InAMeeting",
}


@pytest.fixture(scope="module")
def certificate() -> tuple[bytes, str, str]:
    return make_certificate()


def test_documented_steps_open_the_content(certificate: tuple[bytes, str, str]) -> None:
    pem, cert_b64, _ = certificate
    content = encrypt_resource(PRESENCE, cert_b64, "cert-1")
    assert open_by_hand(content, pem) == PRESENCE


def test_content_names_the_certificate_id_and_thumbprint(
    certificate: tuple[bytes, str, str],
) -> None:
    _, cert_b64, thumbprint = certificate
    content = encrypt_resource(PRESENCE, cert_b64, "cert-1")
    assert content["encryptionCertificateId"] == "cert-1"
    assert content["encryptionCertificateThumbprint"] == thumbprint
    der = base64.b64decode(cert_b64)
    assert thumbprint == hashlib.sha1(der).hexdigest().upper()


def test_content_has_exactly_graphs_fields(certificate: tuple[bytes, str, str]) -> None:
    content = encrypt_resource(PRESENCE, certificate[1], "cert-1")
    assert set(content) == {
        "data",
        "dataKey",
        "dataSignature",
        "encryptionCertificateId",
        "encryptionCertificateThumbprint",
    }


def test_symmetric_key_is_256_bits_and_fresh_per_item(certificate: tuple[bytes, str, str]) -> None:
    pem, cert_b64, _ = certificate
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    oaep = asym_padding.OAEP(
        mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None
    )
    keys = [
        private_key.decrypt(
            base64.b64decode(encrypt_resource(PRESENCE, cert_b64, "c")["dataKey"]), oaep
        )
        for _ in range(2)
    ]
    assert [len(k) for k in keys] == [32, 32]
    assert keys[0] != keys[1]


def test_tampered_ciphertext_fails_the_signature(certificate: tuple[bytes, str, str]) -> None:
    pem, cert_b64, _ = certificate
    content = encrypt_resource(PRESENCE, cert_b64, "cert-1")
    data = bytearray(base64.b64decode(content["data"]))
    data[0] ^= 1
    content["data"] = base64.b64encode(bytes(data)).decode()
    with pytest.raises(ValueError, match="signature mismatch"):
        open_by_hand(content, pem)


@pytest.mark.parametrize("bits", [2048, 3072])
def test_certificate_is_self_signed_rsa_of_requested_size(bits: int) -> None:
    pem, cert_b64, _ = make_certificate("bridge-test", bits)
    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == bits
    assert cert.issuer == cert.subject
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.public_key().public_numbers() == public_key.public_numbers()


@pytest.mark.parametrize("bits", [1024, 8192])
def test_certificate_outside_graphs_key_sizes_is_refused(bits: int) -> None:
    with pytest.raises(ValueError, match="2048-4096"):
        make_certificate(bits=bits)
