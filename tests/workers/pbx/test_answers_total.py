"""What a PBX answers is outside input: each parser of it, fed anything (hypothesis, bounded and
derandomized: tests/conftest.py), returns or raises only its declared error."""

from __future__ import annotations

import contextlib
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import PbxError
from workers.callstate.dialog_info import DialogInfoError, DialogView, parse_dialog_info
from workers.pbx import sip_wire
from workers.pbx.ami_wire import BANNER_PREFIX, ActionResult, AmiProtocolError, MessageReader
from workers.pbx.pidf import parse_pidf

# Text as it may come off a wire: printable, controls, markup, and bytes that are not UTF-8.
wire_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from("<>&\"'=:;,\r\n\t /"), max_size=40
)
wire_bytes = st.binary(max_size=300) | wire_text.map(lambda t: t.encode("utf-8"))


# ---- AMI --------------------------------------------------------------------------------

ami_lines = st.lists(
    st.one_of(
        st.builds(
            lambda k, v: f"{k}: {v}",
            st.sampled_from(
                ["Response", "Event", "ActionID", "EventList", "Message", "Channel", "State"]
            ),
            wire_text,
        ),
        wire_text,
        st.just(""),
    ),
    max_size=12,
)


@given(
    banner=st.sampled_from([BANNER_PREFIX + " 9.0.0", "HTTP/1.1 200 OK", ""]),
    lines=ami_lines,
    raw=wire_bytes,
    cut=st.integers(min_value=1, max_value=64),
)
def test_the_ami_reader_yields_messages_or_a_protocol_error(
    banner: str, lines: list[str], raw: bytes, cut: int
) -> None:
    data = ("\r\n".join([banner, *lines, "", ""])).encode("utf-8", "surrogatepass") + raw
    reader = MessageReader()
    result = ActionResult("Ping", "1")
    try:
        for start in range(0, len(data), cut):  # as the socket hands it over: in pieces
            for seq, message in enumerate(reader.feed(data[start : start + cut])):
                result.add(message, seq)
                message.as_dict()
    except AmiProtocolError:
        return
    assert isinstance(result.ok, bool) and isinstance(result.message, str)


# ---- SIP --------------------------------------------------------------------------------

status_lines = st.one_of(
    st.builds(lambda code, reason: f"SIP/2.0 {code} {reason}", st.text(max_size=6), wire_text),
    st.builds(lambda m, uri: f"{m} {uri} SIP/2.0", st.text(max_size=10), wire_text),
    wire_text,
)
sip_headers = st.lists(
    st.builds(
        lambda k, v: f"{k}: {v}",
        st.sampled_from(["Via", "v", "CSeq", "Expires", "Content-Length", "SIP-ETag", "To"]),
        wire_text,
    )
    | wire_text,
    max_size=8,
)


@given(first=status_lines, headers=sip_headers, body=wire_bytes)
def test_a_sip_message_parses_or_is_none(first: str, headers: list[str], body: bytes) -> None:
    data = "\r\n".join([first, *headers, "", ""]).encode("utf-8", "surrogatepass") + body
    message = sip_wire.parse_message(data)
    if message is not None:
        for name in ("expires", "cseq", "content-length"):
            message.header_int(name)
        sip_wire.branch_of(message)
        sip_wire.tag_of(message.header("to"))
        sip_wire.uri_of(message.header("to"))
    sip_wire.parse_response(data)


@given(
    challenge=st.builds(
        lambda s, rest: f"{s} {rest}", st.sampled_from(["Digest", "Basic", ""]), wire_text
    )
)
def test_a_digest_challenge_is_answered_or_refused_as_a_pbx_error(challenge: str) -> None:
    try:
        answer = sip_wire.digest_authorization(
            challenge,
            method="PUBLISH",
            uri="sip:alice@pbx",
            username="alice",
            password="pw",  # noqa: S106
        )
    except PbxError as exc:
        assert exc.transient is False
        return
    assert answer.startswith("Digest ")


@pytest.mark.parametrize("code", ["²⁰⁰", "٢٠٠", "2" * 5000])
def test_a_status_code_that_is_not_three_ascii_digits_is_not_a_response(code: str) -> None:
    assert sip_wire.parse_response(f"SIP/2.0 {code} OK\r\n\r\n".encode()) is None


# ---- PIDF and dialog-info ----------------------------------------------------------------

PIDF = (
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:'
    'data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity={entity}>'
    "<tuple id={tid}><status><basic>{basic}</basic></status></tuple>"
    "<dm:person id={pid}><rpid:activities>{activities}</rpid:activities>"
    "<dm:note>{note}</dm:note></dm:person></presence>"
)
DIALOG_INFO = (
    '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version={version} state={state} '
    "entity={entity}>{dialogs}</dialog-info>"
)
DIALOG = (
    "<dialog id={id} call-id={call_id} direction={direction}>"
    "<state event={event}>{state}</state></dialog>"
)
attribute = wire_text.map(quoteattr)
element_text = wire_text  # unescaped on purpose: markup inside text must be refused, not crash


@given(
    doc=st.builds(
        PIDF.format,
        entity=attribute,
        tid=attribute,
        basic=element_text,
        pid=attribute,
        activities=st.lists(st.sampled_from(["<rpid:busy/>", "<rpid:away/>", "<rpid:x/>"])).map(
            "".join
        ),
        note=element_text,
    ).map(str.encode)
    | wire_bytes
)
def test_a_pidf_document_parses_or_is_a_value_error(doc: bytes) -> None:
    with contextlib.suppress(ValueError):  # what else escapes fails the test
        parse_pidf(doc)


dialogs = st.lists(
    st.builds(
        DIALOG.format,
        id=attribute,
        call_id=attribute,
        direction=st.sampled_from(["initiator", "recipient"]).map(quoteattr) | attribute,
        event=attribute,
        state=st.sampled_from(["trying", "early", "confirmed", "terminated"]) | element_text,
    ),
    max_size=4,
).map("".join)
dialog_docs = st.builds(
    DIALOG_INFO.format,
    version=st.integers().map(str).map(quoteattr) | attribute,
    state=st.sampled_from(["full", "partial"]).map(quoteattr) | attribute,
    entity=attribute,
    dialogs=dialogs,
).map(str.encode)


@given(docs=st.lists(dialog_docs | wire_bytes, min_size=1, max_size=4))
def test_dialog_info_parses_and_applies_or_is_a_dialog_info_error(docs: list[bytes]) -> None:
    view = DialogView()
    for doc in docs:
        try:
            view.apply(parse_dialog_info(doc))
        except DialogInfoError:
            continue
