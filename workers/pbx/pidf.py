"""PIDF presence documents (RFC 3863) with RPID activities (RFC 4480): build and parse."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - see parse_pidf for why this is safe here
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from workers.pbx.base import ProfileChange

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
CONTENT_TYPE = "application/pidf+xml"
# Characters XML 1.0 cannot carry at all, even escaped; a profile name must not break the body.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# RFC 4480 section 3.2: the activities a watcher's client knows how to show.
RPID_ACTIVITIES = frozenset(
    {
        "appointment",
        "away",
        "breakfast",
        "busy",
        "dinner",
        "holiday",
        "in-transit",
        "looking-for-work",
        "meal",
        "meeting",
        "on-the-phone",
        "other",
        "performance",
        "permanent-absence",
        "playing",
        "presentation",
        "shopping",
        "sleeping",
        "spectator",
        "steering",
        "travel",
        "tv",
        "unknown",
        "vacation",
        "working",
        "worship",
    }
)

# Teams activity first (it is the more precise value), then Teams availability.
_BY_TEAMS_ACTIVITY = {
    "inacall": "on-the-phone",
    "inaconferencecall": "on-the-phone",
    "inameeting": "meeting",
    "presenting": "presentation",
    "away": "away",
    "berightback": "away",
    "offwork": "away",
    "outofoffice": "vacation",
    "busy": "busy",
    "donotdisturb": "busy",
    "urgentinterruptionsonly": "busy",
}
_BY_TEAMS_AVAILABILITY = {
    "busy": "busy",
    "donotdisturb": "busy",
    "away": "away",
    "berightback": "away",
}
# Last resort when no Teams values came with the change: words in the profile name.
_BY_PROFILE_WORD = (
    ("meeting", "meeting"),
    ("call", "on-the-phone"),
    ("phone", "on-the-phone"),
    ("present", "presentation"),
    ("do not disturb", "busy"),
    ("dnd", "busy"),
    ("busy", "busy"),
    ("away", "away"),
    ("be right back", "away"),
    ("out of office", "vacation"),
    ("vacation", "vacation"),
    ("holiday", "holiday"),
    ("lunch", "meal"),
)


@dataclass(frozen=True)
class PresenceDocument:
    """What one PUBLISH says about one presentity."""

    entity: str  # sip:alice@example.com
    basic: str = "open"  # "open" | "closed"
    activities: tuple[str, ...] = ()
    note: str = ""
    tuple_id: str = "pb-0"
    person_id: str = "pb-p"


def activities_for(change: ProfileChange) -> tuple[str, ...]:
    """The RPID activity that best says what the user is doing, or none when available."""
    activity = _BY_TEAMS_ACTIVITY.get(change.activity.strip().lower())
    if activity is None:
        activity = _BY_TEAMS_AVAILABILITY.get(change.availability.strip().lower())
    if activity is None and not change.availability and not change.activity:
        name = change.profile.lower()
        activity = next((a for word, a in _BY_PROFILE_WORD if word in name), None)
    return (activity,) if activity else ()


def basic_for(change: ProfileChange) -> str:
    # Only Offline says "cannot be reached"; busy people are still reachable (RFC 3863 4.1.4).
    offline = change.availability.strip().lower() == "offline" or (
        not change.availability and change.profile.strip().lower() == "offline"
    )
    return "closed" if offline else "open"


def document_for(change: ProfileChange, entity: str) -> PresenceDocument:
    return PresenceDocument(
        entity=entity,
        basic=basic_for(change),
        activities=activities_for(change),
        note=change.profile,
    )


def build_pidf(doc: PresenceDocument) -> bytes:
    """Serialise deterministically: the same document always gives the same bytes."""
    if doc.basic not in ("open", "closed"):
        raise ValueError(f"basic must be open or closed, not {doc.basic!r}")
    unknown = [a for a in doc.activities if a not in RPID_ACTIVITIES]
    if unknown:
        raise ValueError(f"not RPID activities: {', '.join(unknown)}")
    text = _NOT_XML.sub("", doc.note)
    note = f"<note>{escape(text)}</note>" if text else ""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" xmlns:rpid="{RPID_NS}" '
        f"entity={quoteattr(_NOT_XML.sub('', doc.entity))}>",
        f"<tuple id={quoteattr(doc.tuple_id)}>",
        f"<status><basic>{doc.basic}</basic></status>",
        f"<contact>{escape(_NOT_XML.sub('', doc.entity))}</contact>",
        note,
        "</tuple>",
        f"<dm:person id={quoteattr(doc.person_id)}>",
    ]
    if doc.activities:
        inner = "".join(f"<rpid:{a}/>" for a in doc.activities)
        lines.append(f"<rpid:activities>{inner}</rpid:activities>")
    if text:
        lines.append(f"<dm:note>{escape(text)}</dm:note>")
    lines += ["</dm:person>", "</presence>"]
    return "\n".join(line for line in lines if line).encode("utf-8") + b"\n"


def parse_pidf(body: bytes | str) -> PresenceDocument:
    """Read the first tuple's basic status, the activities and the first note.

    Bodies come from our own store or from the presence server we publish to; expat in
    Python 3.11 neither fetches external entities nor expands nested entities unbounded.
    """
    try:
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as exc:
        raise ValueError(f"not a PIDF document: {exc}") from exc
    if root.tag != f"{{{PIDF_NS}}}presence":
        raise ValueError(f"not a PIDF document: root element is {root.tag}")
    tuple_el = root.find(f"{{{PIDF_NS}}}tuple")
    basic = "closed"
    tuple_id = ""
    if tuple_el is not None:
        tuple_id = tuple_el.get("id", "")
        basic = (tuple_el.findtext(f"{{{PIDF_NS}}}status/{{{PIDF_NS}}}basic") or "").strip()
    activities: list[str] = []
    for container in root.iter(f"{{{RPID_NS}}}activities"):
        for child in container:
            name = child.tag.rpartition("}")[2]
            if name not in activities:
                activities.append(name)
    notes = [
        n.text or "" for n in root.iter() if n.tag in (f"{{{PIDF_NS}}}note", f"{{{DM_NS}}}note")
    ]
    person = root.find(f"{{{DM_NS}}}person")
    return PresenceDocument(
        entity=root.get("entity", ""),
        basic=basic,
        activities=tuple(activities),
        note=notes[0] if notes else "",
        tuple_id=tuple_id,
        person_id=person.get("id", "") if person is not None else "",
    )
