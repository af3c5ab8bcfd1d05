"""Standard Webhooks signatures (symmetric, `v1`): secrets, signing, and checking a request.

Spec 1.0 (standardwebhooks.com): the sender signs `{webhook-id}.{webhook-timestamp}.{body}`
with HMAC-SHA256, keyed by the base64 after a secret's `whsec_`, and sends
`webhook-signature: v1,<base64>`; the header may list several signatures, space-separated, so
a secret can be rotated without downtime. A receiver checks cheapest first: the headers, the
timestamp's freshness, then the signature over the raw body, in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.errors import BridgeError

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's marker, not a secret)
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # the spec's range for a symmetric secret
TOLERANCE_SECONDS = 300
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
# Visible ASCII except "." (0x2E): the spec keeps the separator out of ids, so the signed text
# splits one way only.
_ID = re.compile(r"[!-\-/-~]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# More entries than any rotation needs would only make a forger's request cost more HMACs.
MAX_SIGNATURES = 8


class SignatureError(BridgeError):
    """A request whose Standard Webhooks headers or signature do not hold.

    The message names what failed and never a secret, so it can be answered to the sender.
    """

    status_code = 401


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """A request's three headers, checked for shape and freshness but not yet against a key."""

    msg_id: str
    timestamp: str
    signatures: tuple[bytes, ...]  # the decoded `v1` entries; other schemes are skipped


def parse_secrets(value: str) -> tuple[bytes, ...]:
    """HMAC keys of `whsec_<base64>` secrets separated by commas or spaces, in their order.

    A ValueError lists every bad one by position, never its text.
    """
    parts = value.replace(",", " ").split()
    if not parts:
        raise ValueError(f"empty: give one or more {SECRET_PREFIX}<base64> secrets, or unset it")
    keys: list[bytes] = []
    problems: list[str] = []
    for number, part in enumerate(parts, 1):
        where = f"secret {number} of {len(parts)}" if len(parts) > 1 else "the secret"
        key = _key(part)
        if isinstance(key, str):
            problems.append(f"{where} {key}")
        else:
            keys.append(key)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(keys)


def _key(secret: str) -> bytes | str:
    if not secret.startswith(SECRET_PREFIX):
        return f"does not start with {SECRET_PREFIX!r}"
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"is not base64 after {SECRET_PREFIX!r}"
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        return f"must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    return key


def new_secret() -> str:
    """A fresh secret: 32 random bytes, as `openssl rand -base64 32` makes them."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """One `webhook-signature` entry: `v1,<base64 of HMAC-SHA256>`."""
    return "v1," + base64.b64encode(_mac(key, msg_id, str(timestamp), body)).decode()


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def read_headers(headers: Iterable[tuple[str, str]], now: float) -> SignedHeaders:
    """The three headers out of all of a request's (name, value) pairs, repeats included.

    Raises SignatureError for one missing or sent twice, an id or timestamp of the wrong
    shape, a timestamp more than TOLERANCE_SECONDS from `now`, or no `v1` signature.
    """
    found: dict[str, list[str]] = {name: [] for name in HEADERS}
    for name, value in headers:
        values = found.get(name.lower())
        if values is not None:
            values.append(value.strip())
    missing = [name for name in HEADERS if not found[name]]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    repeated = [name for name in HEADERS if len(found[name]) > 1]
    if repeated:
        # Asterisk's CURL() sends this: CURLOPT(httpheader) adds to the headers of the
        # channel's earlier requests instead of replacing them.
        raise SignatureError(
            f"header(s) sent more than once: {', '.join(repeated)}; each request needs its own"
        )
    [msg_id], [timestamp], [signature] = (found[name] for name in HEADERS)
    if not _ID.fullmatch(msg_id):
        raise SignatureError(f"{ID_HEADER} must be 1 to 256 visible ASCII characters, no '.'")
    if not is_unix_seconds(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be integer Unix seconds")
    skew = int(timestamp) - now
    if abs(skew) > TOLERANCE_SECONDS:
        when = "in the future" if skew > 0 else "old"
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {abs(int(skew))} s {when}; at most {TOLERANCE_SECONDS} s "
            "is accepted (sign each request when it is sent; check the sender's clock)"
        )
    if len(signature.split()) > MAX_SIGNATURES:
        raise SignatureError(f"{SIGNATURE_HEADER} lists more than {MAX_SIGNATURES} signatures")
    signatures = tuple(_v1_signatures(signature))
    if not signatures:
        raise SignatureError(f"{SIGNATURE_HEADER} has no 'v1,<base64>' entry")
    return SignedHeaders(msg_id, timestamp, signatures)


def is_unix_seconds(value: str) -> bool:
    """Integer Unix seconds as a header carries them: 1 to 12 ASCII digits."""
    return _TIMESTAMP.fullmatch(value) is not None


def _v1_signatures(header: str) -> Iterable[bytes]:
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: ed25519) or a malformed entry
        try:
            yield base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue


def verify(keys: Sequence[bytes], signed: SignedHeaders, body: bytes) -> int:
    """Which key signed `body` (its index in `keys`); SignatureError when none did."""
    for index, key in enumerate(keys):
        expected = _mac(key, signed.msg_id, signed.timestamp, body)
        for candidate in signed.signatures:
            if hmac.compare_digest(expected, candidate):
                return index
    raise SignatureError("no signature matches: wrong secret, or the body was changed")


@dataclass(frozen=True, slots=True)
class Signer:
    """Whose key verified a request: a tenant's (`owner`), or a shared one (`owner` None)."""

    owner: str | None
    position: int  # in its owner's list: above 0 is an older key still accepted (rotation)


@dataclass(frozen=True)
class Keyring:
    """Every key that may sign, each with its owner, so a request is tied to who signed it."""

    keys: tuple[tuple[Signer, bytes], ...] = ()

    @classmethod
    def of(cls, owned: Iterable[tuple[str | None, str]]) -> Keyring:
        """From (owner, secrets) pairs; `secrets` as `parse_secrets` reads them."""
        return cls(
            tuple(
                (Signer(owner, position), key)
                for owner, value in owned
                for position, key in enumerate(parse_secrets(value))
            )
        )

    def signers(self, signed: SignedHeaders, body: bytes) -> list[Signer]:
        """Every key owner whose key signed `body`; SignatureError when none did.

        All keys are tried (no early exit), so the time taken does not tell whose key matched.
        """
        found: list[Signer] = []
        for signer, key in self.keys:
            expected = _mac(key, signed.msg_id, signed.timestamp, body)
            if any(hmac.compare_digest(expected, c) for c in signed.signatures):
                found.append(signer)
        if not found:
            raise SignatureError("no signature matches: wrong secret, or the body was changed")
        return found
