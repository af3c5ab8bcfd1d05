from __future__ import annotations

import pytest

from workers.pbx.base import ProfileChange
from workers.pbx.pidf import (
    PresenceDocument,
    activities_for,
    basic_for,
    build_pidf,
    document_for,
    parse_pidf,
)

ENTITY = "sip:alice@presence.test"


@pytest.mark.parametrize(
    ("availability", "activity", "expected"),
    [
        ("Busy", "InACall", ("on-the-phone",)),
        ("Busy", "InAConferenceCall", ("on-the-phone",)),
        ("Busy", "InAMeeting", ("meeting",)),
        ("DoNotDisturb", "Presenting", ("presentation",)),
        ("Away", "Away", ("away",)),
        ("BeRightBack", "BeRightBack", ("away",)),
        ("Offline", "OffWork", ("away",)),
        ("Offline", "OutOfOffice", ("vacation",)),
        ("DoNotDisturb", "DoNotDisturb", ("busy",)),
        ("Busy", "Busy", ("busy",)),
        ("DoNotDisturb", "UrgentInterruptionsOnly", ("busy",)),
        ("Busy", "SomethingNew", ("busy",)),  # unknown activity: the availability decides
        ("Available", "Available", ()),
        ("Offline", "Offline", ()),
        ("PresenceUnknown", "PresenceUnknown", ()),
        ("busy", "inameeting", ("meeting",)),  # case does not matter
    ],
)
def test_activities_follow_teams_values(
    availability: str, activity: str, expected: tuple[str, ...]
) -> None:
    change = ProfileChange("alice", "Whatever", availability=availability, activity=activity)
    assert activities_for(change) == expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("Teams Meeting", ("meeting",)),
        ("On Call", ("on-the-phone",)),
        ("Do Not Disturb", ("busy",)),
        ("DND", ("busy",)),
        ("Away", ("away",)),
        ("Out of Office", ("vacation",)),
        ("Lunch", ("meal",)),
        ("Available", ()),
        ("Custom 1", ()),
    ],
)
def test_activities_fall_back_to_the_profile_name(profile: str, expected: tuple[str, ...]) -> None:
    assert activities_for(ProfileChange("alice", profile)) == expected


@pytest.mark.parametrize(
    ("availability", "profile", "expected"),
    [
        ("Offline", "Offline", "closed"),
        ("", "Offline", "closed"),
        ("Offline", "Away", "closed"),
        ("DoNotDisturb", "Do Not Disturb", "open"),
        ("Busy", "Teams Meeting", "open"),
        ("Available", "Available", "open"),
        ("", "Teams Meeting", "open"),
    ],
)
def test_basic_is_closed_only_when_offline(availability: str, profile: str, expected: str) -> None:
    assert basic_for(ProfileChange("alice", profile, availability=availability)) == expected


@pytest.mark.parametrize(
    "note",
    ["Teams Meeting", "R&D <urgent> \"quoted\" 'single'", "Réunion Teams 会議", "", "]]> &amp;"],
)
def test_build_then_parse_round_trips(note: str) -> None:
    doc = PresenceDocument(entity=ENTITY, basic="open", activities=("meeting",), note=note)
    assert parse_pidf(build_pidf(doc)) == doc


def test_entity_with_markup_is_escaped() -> None:
    doc = PresenceDocument(entity='sip:a"<b>&@presence.test')
    assert parse_pidf(build_pidf(doc)).entity == doc.entity


def test_characters_xml_cannot_carry_are_dropped() -> None:
    doc = PresenceDocument(entity=ENTITY, note="Teams\x00 Meet\x1bing")
    assert parse_pidf(build_pidf(doc)).note == "Teams Meeting"


def test_build_is_deterministic() -> None:
    change = ProfileChange("alice", "Teams Meeting", availability="Busy", activity="InAMeeting")
    assert build_pidf(document_for(change, ENTITY)) == build_pidf(document_for(change, ENTITY))


def test_document_carries_profile_in_notes_and_activity_in_person() -> None:
    change = ProfileChange("alice", "Teams Meeting", availability="Busy", activity="InAMeeting")
    body = build_pidf(document_for(change, ENTITY)).decode()
    assert "<note>Teams Meeting</note>" in body
    assert "<dm:note>Teams Meeting</dm:note>" in body
    assert "<rpid:activities><rpid:meeting/></rpid:activities>" in body
    assert 'entity="sip:alice@presence.test"' in body


def test_available_has_no_activities_element() -> None:
    body = build_pidf(document_for(ProfileChange("alice", "Available"), ENTITY))
    assert b"activities" not in body


@pytest.mark.parametrize(
    "doc",
    [
        PresenceDocument(entity=ENTITY, basic="maybe"),
        PresenceDocument(entity=ENTITY, activities=("napping",)),
    ],
)
def test_build_refuses_what_pidf_cannot_say(doc: PresenceDocument) -> None:
    with pytest.raises(ValueError):
        build_pidf(doc)


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml", b"<presence/>", b'<foo xmlns="urn:ietf:params:xml:ns:pidf"/>'],
)
def test_parse_refuses_what_is_not_pidf(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_pidf(body)


def test_parse_reads_a_foreign_document() -> None:
    body = (
        '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" '
        'xmlns:p="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:bob@x">'
        '<tuple id="t1"><status><basic>closed</basic></status></tuple>'
        "<note>Gone fishing</note>"
        '<p:person id="x"><r:activities><r:away/><r:meal/></r:activities></p:person>'
        "</presence>"
    )
    doc = parse_pidf(body)
    assert (doc.entity, doc.basic, doc.activities, doc.note) == (
        "sip:bob@x",
        "closed",
        ("away", "meal"),
        "Gone fishing",
    )
