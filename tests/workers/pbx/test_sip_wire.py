"""SIP wire helpers: parsing requests and responses, answering a request, header values."""

from __future__ import annotations

import pytest

from workers.pbx.sip_wire import (
    SipRequest,
    SipResponse,
    aor_of,
    branch_of,
    build_response,
    parse_message,
    split_header_values,
    tag_of,
    uri_of,
)

NOTIFY = (
    b"NOTIFY sip:presence-bridge@127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa.1\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb.2\r\n"
    b"To: <sip:presence-bridge@pbx.test>;tag=ours\r\n"
    b"f: <sip:200@pbx.test>;tag=theirs\r\n"
    b"Call-ID: abc\r\nCSeq: 7 NOTIFY\r\no: dialog\r\n"
    b"Subscription-State: active;\r\n expires=600\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def test_a_request_is_parsed_with_compact_and_folded_headers() -> None:
    message = parse_message(NOTIFY)
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == ("NOTIFY", "sip:presence-bridge@127.0.0.1:5070")
    assert message.header("event") == "dialog" and message.header("from") is not None
    assert message.header("subscription-state") == "active; expires=600"
    assert len(message.all("via")) == 2 and message.body == b"body"
    assert branch_of(message) == "z9hG4bKa.1"


@pytest.mark.parametrize("data", [b"\r\n\r\n", b"hello", b"NOTIFY sip:x SIP/3.0\r\n\r\n"])
def test_anything_else_is_not_a_message(data: bytes) -> None:
    assert parse_message(data) is None


def test_a_response_is_still_a_response() -> None:
    message = parse_message(b"SIP/2.0 481 Call Does Not Exist\r\nCSeq: 2 SUBSCRIBE\r\n\r\n")
    assert isinstance(message, SipResponse) and message.status == 481


def test_an_answer_copies_vias_from_to_call_id_and_cseq() -> None:
    request = parse_message(NOTIFY)
    assert isinstance(request, SipRequest)
    answer = parse_message(build_response(request, 200, "OK"))
    assert isinstance(answer, SipResponse)
    assert answer.all("via") == request.all("via")
    assert [answer.header(h) for h in ("from", "to", "call-id", "cseq")] == [
        request.header(h) for h in ("from", "to", "call-id", "cseq")
    ]
    assert answer.header("content-length") == "0"


def test_an_answer_may_add_a_to_tag_once() -> None:
    request = SipRequest("OPTIONS", "sip:x", [("to", "<sip:x@y>")])
    assert b"To: <sip:x@y>;tag=t1\r\n" in build_response(request, 200, "OK", to_tag="t1")
    tagged = SipRequest("OPTIONS", "sip:x", [("to", "<sip:x@y>;tag=old")])
    assert b"To: <sip:x@y>;tag=old\r\n" in build_response(tagged, 200, "OK", to_tag="t1")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("<sip:200@pbx.test>;tag=abc", "abc"),
        ('"A;tag=x" <sip:200@pbx.test;tag=uri>;tag=abc;other=1', "abc"),
        ("sip:200@pbx.test;tag=abc", "abc"),
        ("<sip:200@pbx.test>", None),
        (None, None),
    ],
)
def test_the_tag_of_a_from_or_to(value: str | None, tag: str | None) -> None:
    assert tag_of(value) == tag


@pytest.mark.parametrize(
    ("value", "uri"),
    [
        ("<sip:127.0.0.1:5060;transport=udp>", "sip:127.0.0.1:5060;transport=udp"),
        ('"PBX" <sip:pbx@10.0.0.1>;expires=60', "sip:pbx@10.0.0.1"),
        ("sip:pbx@10.0.0.1;expires=60", "sip:pbx@10.0.0.1"),
        ("", None),
    ],
)
def test_the_uri_of_a_contact(value: str, uri: str | None) -> None:
    assert uri_of(value) == uri


def test_record_route_values_are_split_outside_angle_brackets() -> None:
    assert split_header_values(["<sip:a;lr>, <sip:b;lr;x=1,2>", "<sip:c;lr>"]) == [
        "<sip:a;lr>",
        "<sip:b;lr;x=1,2>",
        "<sip:c;lr>",
    ]


@pytest.mark.parametrize(
    ("user", "aor"),
    [
        ("200", "sip:200@pbx.test"),
        ("alice smith", "sip:alice%20smith@pbx.test"),
        ("bob@other.test", "sip:bob@other.test"),
    ],
)
def test_aors(user: str, aor: str) -> None:
    assert aor_of(user, "pbx.test") == aor
