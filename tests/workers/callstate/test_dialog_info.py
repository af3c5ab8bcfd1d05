"""dialog-info parsing and one subscription's view: Asterisk's recorded bodies, Kamailio's
observed ones, and partial sequences with their version rules."""

from __future__ import annotations

import pytest

from tests.sip_recorded import ASTERISK_200, ASTERISK_201
from workers.callstate.dialog_info import (
    MAX_ENDED,
    Applied,
    Dialog,
    DialogInfo,
    DialogInfoError,
    DialogView,
    parse_dialog_info,
)

NS = 'xmlns="urn:ietf:params:xml:ns:dialog-info"'


def doc(version: int, state: str, *dialogs: str) -> str:
    return (
        f'<?xml version="1.0"?><dialog-info {NS} version="{version}" state="{state}" '
        f'entity="sip:200@pbx.test">{"".join(dialogs)}</dialog-info>'
    )


def dialog(dialog_id: str, state: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<dialog id="{dialog_id}"{extra}><state>{state}</state></dialog>'


# --- Asterisk (recorded) -------------------------------------------------------------------


def test_the_recordings_hold_both_watchers() -> None:
    assert len(ASTERISK_200) == 6 and len(ASTERISK_201) == 8


@pytest.mark.parametrize(
    ("extension", "index", "state", "direction"),
    [
        ("200", 0, "terminated", None),
        ("200", 2, "confirmed", None),
        ("200", 3, "terminated", None),
        ("201", 2, "early", "recipient"),
        ("201", 3, "early", "recipient"),
        ("201", 4, "confirmed", None),
        ("201", 5, "terminated", None),
    ],
)
def test_asterisk_bodies_are_full_state_with_one_dialog_named_after_the_extension(
    extension: str, index: int, state: str, direction: str | None
) -> None:
    _, body = (ASTERISK_200 if extension == "200" else ASTERISK_201)[index]
    info = parse_dialog_info(body)
    assert info.full and info.version == index
    assert info.entity == f"sip:{extension}@127.0.0.1"
    assert info.dialogs == (Dialog(id=extension, state=state, direction=direction),)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("recording", "busy_while"),
    [
        (ASTERISK_200, [False, False, True, False, False, False]),
        (ASTERISK_201, [False, False, False, False, True, False, False, False]),
    ],
)
def test_asterisk_sequences_show_the_call_only_while_confirmed(
    recording: list[tuple[list[str], str]], busy_while: list[bool]
) -> None:
    view = DialogView()
    seen = []
    for _, body in recording:
        assert view.apply(parse_dialog_info(body)) is Applied.FULL
        seen.append(any(d.state == "confirmed" for d in view.dialogs.values()))
    assert seen == busy_while
    assert view.dialogs == {}  # terminated dialogs are not kept


def test_the_last_asterisk_notify_says_the_subscription_timed_out() -> None:
    headers, _ = ASTERISK_201[-1]
    assert "Subscription-State: terminated;reason=timeout" in headers


# --- Kamailio 5.6 (observed in the blf tests) ------------------------------------------------

KAMAILIO_TRYING = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:200@presence.test">
  <dialog id="padi-6b0f2d14-76c-1" call-id="pbtest-cbcfec04-1" direction="initiator">
    <state>Trying</state>
    <remote>
      <identity>sip:201@presence.test</identity>
      <target uri="sip:201@presence.test"/>
    </remote>
    <local>
      <identity>sip:200@presence.test</identity>
      <target uri="sip:200@presence.test"/>
    </local>
  </dialog>
</dialog-info>
"""  # noqa: E501 - as received

KAMAILIO_EARLY = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:201@presence.test">
  <dialog id="padi-6b0f2d14-76c-1" call-id="pbtest-cbcfec04-1" local-tag="1909uas1" remote-tag="1911uac1" direction="recipient">
    <state>early</state>
  </dialog>
</dialog-info>
"""  # noqa: E501 - as received (remote/local parts left out)


def test_kamailio_states_are_read_case_insensitively() -> None:
    info = parse_dialog_info(KAMAILIO_TRYING)
    assert info.dialogs == (
        Dialog(
            id="padi-6b0f2d14-76c-1",
            state="trying",
            call_id="pbtest-cbcfec04-1",
            direction="initiator",
        ),
    )


def test_kamailio_names_the_call_id_and_the_tags() -> None:
    (only,) = parse_dialog_info(KAMAILIO_EARLY).dialogs
    assert (only.call_id, only.local_tag, only.remote_tag) == (
        "pbtest-cbcfec04-1",
        "1909uas1",
        "1911uac1",
    )


@pytest.mark.parametrize("body", [b"", b"  \r\n", ""])
def test_a_notify_without_a_body_is_full_state_without_dialogs(body: bytes | str) -> None:
    view = DialogView(version=4, dialogs={"a": Dialog("a", "confirmed")})
    info = parse_dialog_info(body)
    assert info.full and info.dialogs == ()
    assert view.apply(info) is Applied.FULL
    assert view.dialogs == {} and view.version == 4


# --- several dialogs, partial state, versions ------------------------------------------------


def test_several_dialogs_in_one_document() -> None:
    info = parse_dialog_info(
        doc(
            1,
            "full",
            dialog("a", "confirmed", call_id="c1"),
            dialog("b", "early", direction="recipient"),
            dialog("c", "terminated"),
        )
    )
    assert [(d.id, d.state, d.call_id) for d in info.dialogs] == [
        ("a", "confirmed", "c1"),
        ("b", "early", None),
        ("c", "terminated", None),
    ]


def test_the_reason_a_dialog_terminated_is_kept() -> None:
    body = doc(
        3,
        "partial",
        '<dialog id="a"><state event="rejected" code="486">terminated</state></dialog>',
    )
    (only,) = parse_dialog_info(body).dialogs
    assert only.ended and only.event == "rejected"


@pytest.mark.parametrize(
    ("documents", "results", "dialogs"),
    [
        pytest.param(
            [
                doc(0, "full"),
                doc(1, "partial", dialog("a", "early")),
                doc(2, "partial", dialog("a", "confirmed")),
                doc(3, "partial", dialog("a", "terminated")),
            ],
            [Applied.FULL, Applied.PARTIAL, Applied.PARTIAL, Applied.PARTIAL],
            {},
            id="one call ringing, answered, ended",
        ),
        pytest.param(
            [doc(5, "full", dialog("a", "confirmed")), doc(6, "partial", dialog("b", "confirmed"))],
            [Applied.FULL, Applied.PARTIAL],
            {"a": "confirmed", "b": "confirmed"},
            id="a partial adds a second dialog and keeps the first",
        ),
        pytest.param(
            [
                doc(5, "full", dialog("a", "confirmed"), dialog("b", "confirmed")),
                doc(6, "partial", dialog("a", "terminated")),
            ],
            [Applied.FULL, Applied.PARTIAL],
            {"b": "confirmed"},
            id="a partial ends one of two",
        ),
        pytest.param(
            [
                doc(1, "full", dialog("a", "confirmed")),
                doc(1, "partial", dialog("a", "terminated")),
                doc(0, "full"),
            ],
            [Applied.FULL, Applied.STALE, Applied.STALE],
            {"a": "confirmed"},
            id="a repeated or older version is ignored",
        ),
        pytest.param(
            [doc(1, "full"), doc(3, "partial", dialog("a", "confirmed"))],
            [Applied.FULL, Applied.GAP],
            {"a": "confirmed"},
            id="a skipped version is a gap: applied, then full state is asked for",
        ),
        pytest.param(
            [doc(7, "partial", dialog("a", "confirmed")), doc(8, "full", dialog("b", "early"))],
            [Applied.GAP, Applied.FULL],
            {"b": "early"},
            id="a partial before any full state is a gap; full state then replaces all",
        ),
        pytest.param(
            [doc(1, "full", dialog("a", "confirmed")), doc(2, "full", dialog("b", "confirmed"))],
            [Applied.FULL, Applied.FULL],
            {"b": "confirmed"},
            id="full state replaces: a dialog missing from it is gone",
        ),
    ],
)
def test_partial_and_full_sequences(
    documents: list[str], results: list[Applied], dialogs: dict[str, str]
) -> None:
    view = DialogView()
    assert [view.apply(parse_dialog_info(d)) for d in documents] == results
    assert {k: v.state for k, v in view.dialogs.items()} == dialogs


def test_a_document_without_a_namespace_is_read() -> None:
    body = (
        '<dialog-info version="0" state="full" entity="sip:1@x"><dialog id="1">'
        "<state>confirmed</state></dialog></dialog-info>"
    )
    assert parse_dialog_info(body) == DialogInfo(0, True, "sip:1@x", (Dialog("1", "confirmed"),))


def test_an_unknown_state_is_kept_as_unknown() -> None:
    (only,) = parse_dialog_info(doc(0, "full", dialog("a", "on-hold"))).dialogs
    assert only.state == "unknown"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><dialog-info/>', "DOCTYPE"),
        ("<dialog-info", "not XML"),
        (f'<presence {NS} version="1" state="full"/>', "root element"),
        ('<dialog-info xmlns="urn:other" version="1" state="full"/>', "root element"),
        (f'<dialog-info {NS} version="x" state="full"/>', "version"),
        (f'<dialog-info {NS} state="full"/>', "version"),
        (f'<dialog-info {NS} version="-1" state="full"/>', "negative"),
        (f'<dialog-info {NS} version="1" state="delta"/>', "neither full nor partial"),
        (doc(1, "full", "<dialog><state>confirmed</state></dialog>"), "without an id"),
    ],
)
def test_bodies_that_are_not_dialog_info_are_refused(body: str, message: str) -> None:
    with pytest.raises(DialogInfoError, match=message):
        parse_dialog_info(body)


# Seen from Kamailio 5.6.3 under back-to-back calls: one dialog listed twice, its current
# state and a stale "Trying" (two publications of the same dialog), stale ended calls too.
KAMAILIO_TWICE = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="24" state="full" entity="sip:200@presence.test">
  <dialog id="padi-6b0f3382-3bbd-2" call-id="pb-call-7b5faf927d51-1" direction="initiator">
    <state>terminated</state>
  </dialog>
  <dialog id="padi-6b0f3382-3bbd-3" call-id="pb-call-fac534f77b03-1" direction="initiator">
    <state>confirmed</state>
  </dialog>
  <dialog id="padi-6b0f3382-3bbd-3" call-id="pb-call-fac534f77b03-1" direction="initiator">
    <state>Trying</state>
  </dialog>
</dialog-info>
"""  # noqa: E501 - as received (remote/local parts left out)


@pytest.mark.parametrize(
    ("states", "holds"),
    [
        (["confirmed", "Trying"], "confirmed"),
        (["Trying", "confirmed"], "confirmed"),
        (["early", "terminated", "confirmed"], "terminated"),
        (["on-hold", "early"], "early"),
    ],
)
def test_a_dialog_listed_twice_is_as_far_along_as_its_furthest_entry(
    states: list[str], holds: str
) -> None:
    info = parse_dialog_info(doc(1, "full", *(dialog("a", s) for s in states)))
    assert [(d.id, d.state) for d in info.dialogs] == [("a", holds)]


def test_kamailio_listing_one_dialog_twice_still_shows_the_call() -> None:
    view = DialogView()
    view.apply(parse_dialog_info(KAMAILIO_TWICE))
    assert {k: v.state for k, v in view.dialogs.items()} == {"padi-6b0f3382-3bbd-3": "confirmed"}


def test_a_dialog_that_moves_back_keeps_its_furthest_state() -> None:
    """Kamailio under an at-once answer: `early` published after `confirmed` of one call."""
    view = DialogView()
    view.apply(parse_dialog_info(doc(170, "full", dialog("d", "confirmed", call_id="c1"))))
    view.apply(parse_dialog_info(doc(171, "full", dialog("d", "early", call_id="c1"))))
    assert {k: v.state for k, v in view.dialogs.items()} == {"d": "confirmed"}
    view.apply(parse_dialog_info(doc(172, "full", dialog("d", "terminated", call_id="c1"))))
    assert view.dialogs == {}


def test_a_dialog_id_reused_without_a_call_id_is_taken_as_it_comes() -> None:
    """Asterisk names every call of 200 `200`: a new call may ring under the same id."""
    view = DialogView()
    view.apply(parse_dialog_info(doc(1, "full", dialog("200", "confirmed"))))
    view.apply(parse_dialog_info(doc(2, "full", dialog("200", "early"))))
    assert {k: v.state for k, v in view.dialogs.items()} == {"200": "early"}


def test_a_partial_document_cannot_move_a_dialog_back_either() -> None:
    view = DialogView()
    view.apply(parse_dialog_info(doc(1, "full", dialog("d", "confirmed", call_id="c1"))))
    assert (
        view.apply(parse_dialog_info(doc(2, "partial", dialog("d", "trying", call_id="c1"))))
        is Applied.PARTIAL
    )
    assert {k: v.state for k, v in view.dialogs.items()} == {"d": "confirmed"}


def test_a_terminated_dialog_listed_again_by_a_stale_publication_stays_ended() -> None:
    """Kamailio: the `terminated` publication expires, a stale `confirmed` one of the same
    call remains and is listed again about 10 s later."""
    view = DialogView()
    view.apply(parse_dialog_info(doc(1, "full", dialog("d", "confirmed", call_id="c1"))))
    view.apply(parse_dialog_info(doc(2, "full", dialog("d", "terminated", call_id="c1"))))
    view.apply(
        parse_dialog_info(
            doc(
                3,
                "full",
                dialog("d", "confirmed", call_id="c1"),
                dialog("e", "early", call_id="c2"),
            )
        )
    )
    assert {k: v.state for k, v in view.dialogs.items()} == {"e": "early"}
    assert (
        view.apply(parse_dialog_info(doc(4, "partial", dialog("d", "confirmed", call_id="c1"))))
        is Applied.PARTIAL
    )
    assert set(view.dialogs) == {"e"}


def test_an_ended_dialog_is_remembered_while_the_pbx_lists_it() -> None:
    view = DialogView()
    view.apply(parse_dialog_info(doc(1, "full", dialog("d", "terminated", call_id="c1"))))
    view.apply(parse_dialog_info(doc(2, "full", dialog("d", "confirmed", call_id="c1"))))
    assert view.dialogs == {} and ("d", "c1") in view.ended
    view.apply(parse_dialog_info(doc(3, "full")))  # no longer listed: forgotten
    assert view.ended == {}


def test_a_view_remembers_at_most_max_ended_dialogs() -> None:
    view = DialogView()
    ended = [dialog(f"d{n}", "terminated", call_id="c") for n in range(MAX_ENDED + 1)]
    view.apply(parse_dialog_info(doc(1, "full", *ended)))
    assert len(view.ended) == MAX_ENDED and ("d0", "c") not in view.ended
