"""Asterisk 20's own rules, as the test AMI server applies them: write classes, event masks,
presence and device-state values, its base64 decoder, and how it words its answers.

Read in Asterisk 20's source (manager, AstDB, PRESENCE_STATE and DEVICE_STATE code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PERMS = (
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
    "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
    "message",
)  # fmt: skip
PRESENCE_STATES = ("not_set", "unavailable", "available", "away", "xa", "chat", "dnd")
PRESENCE_ORDER = {"": 0, "not_set": 1, "available": 2, "unavailable": 3, "chat": 4,
                  "away": 5, "xa": 6, "dnd": 7}  # fmt: skip
DEVICE_STATES = ("NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING",
                 "RINGINUSE", "ONHOLD")  # fmt: skip
CHANNEL_FIELDS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip
# Write classes an action needs (any one of them); empty: every session may use it.
AUTHORITY: dict[str, tuple[str, ...]] = {
    "login": (), "logoff": (), "ping": (), "events": (), "challenge": (),
    "setvar": ("call",), "getvar": ("call", "reporting"),
    "dbput": ("system",), "dbdel": ("system",), "dbget": ("system", "reporting"),
    "coreshowchannels": ("system", "reporting"),
    "presencestate": ("call", "reporting"), "extensionstate": ("call", "reporting"),
}  # fmt: skip
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TRUE = {"yes", "true", "y", "t", "1", "on"}
_FALSE = {"no", "false", "n", "f", "0", "off"}
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class ManagerUser:
    secret: str
    read: frozenset[str]
    write: frozenset[str]
    allow_multiple_login: bool = True

    @classmethod
    def of(
        cls, secret: str, read: str, write: str, allow_multiple_login: bool = True
    ) -> ManagerUser:
        return cls(secret, perms(read), perms(write), allow_multiple_login)


def perms(text: str) -> frozenset[str]:
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    return frozenset(PERMS) if "all" in names else frozenset(names & set(PERMS))


def event_mask(text: str) -> frozenset[str] | None:
    """strings_to_mask: on/off words, a comma list of classes; None when empty."""
    word = text.strip().lower()
    if not word:
        return None
    if word.isdigit():
        return frozenset(p for i, p in enumerate(PERMS) if int(word) & (1 << i))
    if word in _FALSE:
        return frozenset()
    if word in _TRUE:
        return frozenset(PERMS)
    return perms(word)


def base64_decode(text: str, limit: int = 255) -> str:
    """ast_base64decode: stops at '=', takes any other byte as 63, keeps up to a NUL."""
    out = bytearray()
    acc = bits = 0
    for ch in text:
        if ch == "=" or len(out) >= limit:
            break
        index = _B64.find(ch)
        acc = (acc << 6) | (index if index >= 0 else 63)
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    raw = bytes(out).split(b"\0", 1)[0]
    return raw.decode("utf-8", errors="replace")


def parse_presence(value: str) -> tuple[str, str, str] | None:
    """How PRESENCE_STATE parses a value, then the 'e' option's base64 decoding."""
    parts = value.split(",", 3)  # strsep four times: the rest stays in the options
    state = parts[0].lower()
    if state not in PRESENCE_STATES:
        return None
    subtype = parts[1] if len(parts) > 1 else ""
    message = parts[2] if len(parts) > 2 else ""
    options = parts[3] if len(parts) > 3 else ""
    if options and "e" not in options:
        return None  # "Invalid options"
    if "e" in options:
        return state, base64_decode(subtype), base64_decode(message)
    return state, subtype, message


def lines(*pairs: tuple[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in pairs)


def header(m: Headers, name: str, skip_empty: bool = False) -> str:
    """astman_get_header: the first `Name:` line, leading blanks of the value skipped."""
    for key, value in m:
        if key.lower() == name.lower():
            if skip_empty and not value:
                continue
            return value
    return ""


def reply(
    m: Headers,
    response: str,
    message: str | None = None,
    listflag: str | None = None,
    more: str | None = None,
) -> bytes:
    """astman_send_response_full; `more` continues the message (astman_start_ack)."""
    text = f"Response: {response}\r\n"
    if action_id := header(m, "ActionID"):
        text += f"ActionID: {action_id}\r\n"
    if listflag:
        text += f"EventList: {listflag}\r\n"
    if message is not None:
        text += f"Message: {message}\r\n"
    return (text + (more or "") + "\r\n").encode("utf-8")


def list_complete(m: Headers, event: str, count: int) -> bytes:
    text = f"Event: {event}\r\n"
    if action_id := header(m, "ActionID"):
        text += f"ActionID: {action_id}\r\n"
    return (text + f"EventList: Complete\r\nListItems: {count}\r\n\r\n").encode("utf-8")


def event_bytes(event: Mapping[str, str]) -> bytes:
    return (lines(*event.items()) + "\r\n").encode("utf-8")
