"""Standard Webhooks signatures (`core.standard_webhooks`), checked against the reference
Python library (`standardwebhooks`, PyPI) in both directions."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from core import standard_webhooks as sw
from core.standard_webhooks import SignatureError, SignedHeaders

NOW = 1_763_794_800
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
KEY = b"k" * 32
BODY = b'{"tenant":"contoso","events":[{"type":"call_started","user":"alice","call_id":"c1"}]}'


def reference_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def headers(**values: str) -> list[tuple[str, str]]:
    base = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": reference_signature(SECRET, "msg_1", NOW, BODY),
    }
    return list((base | {k.replace("_", "-"): v for k, v in values.items()}).items())


def test_our_signature_is_the_reference_librarys() -> None:
    assert sw.sign(KEY, "msg_1", NOW, BODY) == reference_signature(SECRET, "msg_1", NOW, BODY)


def test_the_reference_library_verifies_what_we_sign() -> None:
    secret = sw.new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    signature = sw.sign(sw.parse_secrets(secret)[0], "msg_2", stamp, BODY)
    sent = {"webhook-id": "msg_2", "webhook-timestamp": str(stamp), "webhook-signature": signature}
    Webhook(secret).verify(BODY, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(sw.new_secret()).verify(BODY, sent)


def test_a_reference_signature_verifies_with_its_key() -> None:
    assert sw.verify([KEY], sw.read_headers(headers(), NOW), BODY) == 0


def test_the_index_of_the_key_that_signed_is_returned() -> None:
    signed = sw.read_headers(headers(), NOW)
    assert sw.verify([b"n" * 32, KEY], signed, BODY) == 1


@pytest.mark.parametrize(
    ("keys", "body"),
    [([b"n" * 32], BODY), ([KEY], BODY.replace(b"alice", b"mallory")), ([], BODY)],
    ids=["wrong-key", "tampered-body", "no-keys"],
)
def test_a_signature_that_does_not_match_is_refused(keys: list[bytes], body: bytes) -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        sw.verify(keys, sw.read_headers(headers(), NOW), body)


def test_any_v1_entry_of_the_list_may_match() -> None:
    listed = " ".join(
        [
            "v1a,bm90LWVkMjU1MTk=",  # another scheme: skipped
            "v1,not-base64!",  # malformed: skipped
            sw.sign(b"n" * 32, "msg_1", NOW, BODY),  # another key
            reference_signature(SECRET, "msg_1", NOW, BODY),
        ]
    )
    signed = sw.read_headers(headers(webhook_signature=listed), NOW)
    assert len(signed.signatures) == 2
    assert sw.verify([KEY], signed, BODY) == 0


def test_headers_are_found_whatever_their_case() -> None:
    pairs = [(name.title(), value) for name, value in headers()]
    assert sw.read_headers(pairs, NOW).msg_id == "msg_1"


@pytest.mark.parametrize("missing", sw.HEADERS)
def test_a_missing_header_is_named(missing: str) -> None:
    pairs = [(name, value) for name, value in headers() if name != missing]
    with pytest.raises(SignatureError, match=f"missing header\\(s\\): {missing}"):
        sw.read_headers(pairs, NOW)


def test_a_header_sent_twice_is_refused() -> None:
    """What Asterisk's CURL() sends on a channel's second request: the first's headers too."""
    first = headers(webhook_id="msg_0", webhook_timestamp=str(NOW - 10))
    with pytest.raises(SignatureError, match="more than once: webhook-id, webhook-timestamp"):
        sw.read_headers(first + headers(), NOW)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("webhook_id", "1763794800.42", "no '.'"),
        ("webhook_id", "a b", "visible ASCII"),
        ("webhook_id", "x" * 257, "1 to 256"),
        ("webhook_timestamp", "1763794800.5", "integer Unix seconds"),
        ("webhook_timestamp", "-1", "integer Unix seconds"),
        ("webhook_timestamp", str(NOW - 301), "301 s old"),
        ("webhook_timestamp", str(NOW + 301), "301 s in the future"),
        ("webhook_signature", "v1=abcdef", "no 'v1,<base64>' entry"),
        ("webhook_signature", "v1a,abcd", "no 'v1,<base64>' entry"),
    ],
)
def test_a_malformed_or_stale_header_is_refused(name: str, value: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        sw.read_headers(headers(**{name: value}), NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_timestamp_within_five_minutes_is_fresh(offset: int) -> None:
    assert sw.read_headers(headers(), NOW + offset) == SignedHeaders(
        "msg_1", str(NOW), (base64.b64decode(headers()[2][1][3:]),)
    )


def test_secrets_parse_to_their_keys_in_order() -> None:
    second = "whsec_" + base64.b64encode(b"2" * 24).decode().rstrip("=")  # unpadded works too
    assert sw.parse_secrets(f" {SECRET}, {second} ") == (KEY, b"2" * 24)
    assert sw.parse_secrets(f"{SECRET} {second}") == (KEY, b"2" * 24)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("pbx-events-secret", "the secret does not start with 'whsec_'"),
        ("whsec_***", "the secret is not base64 after 'whsec_'"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "must decode to 24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "must decode to 24 to 64 bytes"),
        (f"{SECRET},old-one", "secret 2 of 2 does not start with 'whsec_'"),
    ],
)
def test_a_bad_secret_is_named_by_position_without_its_text(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        sw.parse_secrets(value)
    for part in value.replace(",", " ").split():
        assert part.removeprefix("whsec_")[:8] not in str(caught.value)


def test_every_bad_secret_is_listed() -> None:
    with pytest.raises(ValueError, match="secret 1 of 3 .*; secret 3 of 3 "):
        sw.parse_secrets(f"old,{SECRET},whsec_short")


def test_a_new_secret_holds_32_random_bytes() -> None:
    first, second = sw.new_secret(), sw.new_secret()
    assert first != second
    assert len(sw.parse_secrets(first)[0]) == 32


def test_more_signatures_than_any_rotation_needs_are_refused() -> None:
    many = " ".join([reference_signature(SECRET, "msg_1", NOW, BODY)] * (sw.MAX_SIGNATURES + 1))
    with pytest.raises(SignatureError, match="more than 8 signatures"):
        sw.read_headers(headers(webhook_signature=many), NOW)


def test_a_keyring_names_every_owner_whose_key_signed() -> None:
    other = sw.new_secret()
    ring = sw.Keyring.of([("contoso", f"{other},{SECRET}"), ("fabrikam", other), (None, SECRET)])
    signed = sw.read_headers(headers(), NOW)
    assert ring.signers(signed, BODY) == [sw.Signer("contoso", 1), sw.Signer(None, 0)]


@given(
    entries=st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF)), max_size=12),
    stamp=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20),
)
def test_any_headers_are_read_or_refused_as_a_signature_error(
    entries: list[str], stamp: str
) -> None:
    pairs = [("webhook-id", "msg_1"), ("webhook-timestamp", stamp)]
    pairs += [("webhook-signature", entry) for entry in entries[:1]] + [("x", e) for e in entries]
    with contextlib.suppress(SignatureError):
        sw.read_headers(pairs, NOW)


@given(value=st.text(max_size=200))
def test_any_secret_setting_is_keys_or_a_value_error(value: str) -> None:
    with contextlib.suppress(ValueError):
        assert all(sw.MIN_KEY_BYTES <= len(k) <= sw.MAX_KEY_BYTES for k in sw.parse_secrets(value))
