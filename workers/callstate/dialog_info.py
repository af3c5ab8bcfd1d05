"""RFC 4235 dialog-info documents, with no I/O: parse one, and follow one subscription's view.

A NOTIFY of the dialog event package carries `<dialog-info version=N state="full|partial">`
with one `<dialog>` per dialog of the watched entity. A full document replaces what the
subscriber knew; a partial one changes only the dialogs it names, and its version must be
exactly one more than the last (a gap means a NOTIFY was lost: ask for full state again).

What PBXs really send: Asterisk (chan_sip) sends full documents only, one `<dialog id="200">`
named after the extension, reused for every call, with no call-id and no tags; Kamailio's
presence_dialoginfo sends full documents with a `call-id` (unless configured not to),
capitalised states (`Trying`), a NOTIFY without a body while it holds no state, and now and
then one dialog twice, its current state next to a stale `Trying` (two publications of one
dialog): the most advanced state of a dialog is the one that holds, within a document
and (for a dialog named by its call-id) from one document to the next.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - DOCTYPE refused below, so no entities
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

DIALOG_INFO_NS = "urn:ietf:params:xml:ns:dialog-info"
CONTENT_TYPE = "application/dialog-info+xml"
DialogState = Literal["trying", "proceeding", "early", "confirmed", "terminated", "unknown"]
STATES: frozenset[str] = frozenset({"trying", "proceeding", "early", "confirmed", "terminated"})
RINGING_STATES: frozenset[str] = frozenset({"trying", "proceeding", "early"})
# A dialog only moves forward through these (RFC 4235 3.7.1).
_PROGRESS = {
    "unknown": 0,
    "trying": 1,
    "proceeding": 2,
    "early": 3,
    "confirmed": 4,
    "terminated": 5,
}
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
# At most this many ended dialogs (by id and Call-ID) remembered per view: see _was_ended.
MAX_ENDED = 1000


class DialogInfoError(ValueError):
    """The body is not a dialog-info document this parser can trust."""


@dataclass(frozen=True)
class Dialog:
    id: str
    state: DialogState
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    direction: str | None = None  # "initiator" (the entity called) or "recipient"
    event: str | None = None  # why it terminated: "cancelled", "rejected", "replaced", ...

    @property
    def ended(self) -> bool:
        return self.state == "terminated"


@dataclass(frozen=True)
class DialogInfo:
    version: int
    full: bool  # state="full"; else partial
    entity: str
    dialogs: tuple[Dialog, ...] = ()


def empty_document() -> DialogInfo:
    """What a NOTIFY without a body says: no dialog state at all (Kamailio sends it so)."""
    return DialogInfo(version=-1, full=True, entity="", dialogs=())


def _local(tag: str) -> str:
    """The element's name without its namespace; only ours or none is accepted."""
    namespace, _, name = tag.rpartition("}")
    if namespace and namespace != "{" + DIALOG_INFO_NS:
        return ""
    return name


def _state(text: str | None) -> DialogState:
    value = (text or "").strip().lower()
    return value if value in STATES else "unknown"  # type: ignore[return-value]


def parse_dialog_info(body: bytes | str) -> DialogInfo:
    """A dialog-info document; DialogInfoError for anything else. An empty body: no state."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if not raw.strip():
        return empty_document()
    if _DOCTYPE.search(raw):
        raise DialogInfoError("dialog-info with a DOCTYPE refused (no entities accepted)")
    try:
        root = ET.fromstring(raw)  # noqa: S314 - no DOCTYPE, so no entity can expand
    except ET.ParseError as exc:
        raise DialogInfoError(f"not XML: {exc}") from None
    if _local(root.tag) != "dialog-info":
        raise DialogInfoError(f"root element is {root.tag}, not dialog-info")
    try:
        version = int(root.get("version", ""))
    except ValueError:
        raise DialogInfoError(f"version {root.get('version')!r} is not a number") from None
    if version < 0:
        raise DialogInfoError(f"version {version} is negative")
    state = root.get("state", "").strip().lower()
    if state not in ("full", "partial"):
        raise DialogInfoError(f"state {root.get('state')!r} is neither full nor partial")
    dialogs: list[Dialog] = []
    for element in root:
        if _local(element.tag) != "dialog":
            continue
        dialog_id = (element.get("id") or "").strip()
        if not dialog_id:
            raise DialogInfoError("a dialog without an id")
        state_el = next((c for c in element if _local(c.tag) == "state"), None)
        dialogs.append(
            Dialog(
                id=dialog_id,
                state=_state(state_el.text if state_el is not None else None),
                call_id=element.get("call-id") or None,
                local_tag=element.get("local-tag") or None,
                remote_tag=element.get("remote-tag") or None,
                direction=element.get("direction") or None,
                event=state_el.get("event") if state_el is not None else None,
            )
        )
    return DialogInfo(version, state == "full", root.get("entity", ""), _deduplicated(dialogs))


def _deduplicated(dialogs: list[Dialog]) -> tuple[Dialog, ...]:
    """One entry per dialog id, in first-seen order: the furthest along of its entries."""
    by_id: dict[str, Dialog] = {}
    for dialog in dialogs:
        seen = by_id.get(dialog.id)
        if seen is None or _PROGRESS[dialog.state] > _PROGRESS[seen.state]:
            by_id[dialog.id] = dialog
    return tuple(by_id.values())


class Applied(StrEnum):
    FULL = "full"  # state replaced
    PARTIAL = "partial"  # named dialogs changed
    GAP = "gap"  # partial applied, but a version was skipped: refresh for full state
    STALE = "stale"  # an old or repeated version: ignored


@dataclass
class DialogView:
    """What one subscription knows: its last version and the dialogs not yet terminated."""

    version: int | None = None
    dialogs: dict[str, Dialog] = field(default_factory=dict)
    has_full_state: bool = False  # a full document (or an empty body) has arrived
    # (id, Call-ID) of dialogs seen terminated, oldest first: terminated is final.
    ended: dict[tuple[str, str], None] = field(default_factory=dict)

    def apply(self, doc: DialogInfo) -> Applied:
        if doc.version >= 0 and self.version is not None and doc.version <= self.version:
            return Applied.STALE  # RFC 4235 4.1.2: a retransmission or reordered NOTIFY
        expected = None if self.version is None else self.version + 1
        if doc.version >= 0:
            self.version = doc.version
        for dialog in doc.dialogs:
            if dialog.ended and dialog.call_id is not None:
                self._remember_ended(dialog.id, dialog.call_id)
        live = [d for d in doc.dialogs if not d.ended and not self._was_ended(d)]
        if doc.full:
            # An ended dialog the PBX no longer lists has nothing left that could revive it.
            listed = {(d.id, d.call_id) for d in doc.dialogs}
            self.ended = {k: None for k in self.ended if k in listed}
            self.dialogs = {d.id: self._held(d) for d in live}
            self.has_full_state = True
            return Applied.FULL
        for dialog in doc.dialogs:
            if dialog.ended:
                self.dialogs.pop(dialog.id, None)
        for dialog in live:
            self.dialogs[dialog.id] = self._held(dialog)
        if expected is None or doc.version != expected or not self.has_full_state:
            return Applied.GAP
        return Applied.PARTIAL

    def _held(self, dialog: Dialog) -> Dialog:
        """The dialog, or what is known of it when the document says it moved back.

        RFC 4235 3.7.1: a dialog only moves forward. Kamailio publishes from several
        processes, so an `early` can land after the `confirmed` of the same call (seen with
        a callee that answers at once) and stay until the call ends. Only a dialog named by
        its Call-ID is held: Asterisk reuses one id without a call-id for every call.
        """
        seen = self.dialogs.get(dialog.id)
        if (
            seen is not None
            and dialog.call_id is not None
            and seen.call_id == dialog.call_id
            and _PROGRESS[dialog.state] < _PROGRESS[seen.state]
        ):
            return seen
        return dialog

    def _remember_ended(self, dialog_id: str, call_id: str) -> None:
        self.ended.pop((dialog_id, call_id), None)
        self.ended[(dialog_id, call_id)] = None
        while len(self.ended) > MAX_ENDED:
            del self.ended[next(iter(self.ended))]

    def _was_ended(self, dialog: Dialog) -> bool:
        """A dialog named by its Call-ID that terminated before cannot come back: Kamailio
        may hold a second, stale publication of it (`confirmed`) that outlives the
        `terminated` one and lists it again once that expires (seen ~10 s after a call,
        then for as long as that publication lives); it is remembered while listed."""
        return dialog.call_id is not None and (dialog.id, dialog.call_id) in self.ended
