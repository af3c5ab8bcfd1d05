"""The Asterisk Manager Interface wire format, with no I/O.

After a one-line banner (`Asterisk Call Manager/<version>`), both directions send messages
of `Key: Value` lines ending in CRLF; a blank line ends a message. A header may repeat (the
`PresenceState` answer carries `Message:` twice), so a message keeps its lines in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BANNER_PREFIX = "Asterisk Call Manager/"
MAX_LINE_BYTES = 64 * 1024  # far above anything Asterisk sends; a guard against a bad peer
MAX_HEADERS = 4096


class AmiProtocolError(Exception):
    """The peer does not speak AMI (no banner, a runaway line)."""


@dataclass(frozen=True)
class AmiMessage:
    """One AMI message: its header lines in wire order. Names compare case-insensitively."""

    headers: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, as Asterisk's own parser reads it."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def as_dict(self) -> dict[str, str]:
        """Header -> value, the first occurrence winning."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            out.setdefault(key, value)
        return out

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")


def message_from(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> AmiMessage:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return AmiMessage(tuple((str(k), str(v)) for k, v in items))


def _check_text(text: str, what: str) -> None:
    # A CR or LF inside a value would end the line early and inject headers of its own.
    if "\r" in text or "\n" in text:
        raise ValueError(f"AMI {what} may not contain CR or LF: {text!r}")


def encode(headers: Iterable[tuple[str, str]]) -> bytes:
    """One message on the wire, blank line included."""
    lines: list[str] = []
    for key, value in headers:
        _check_text(key, "header name")
        _check_text(value, "header value")
        if not key or ":" in key:
            raise ValueError(f"bad AMI header name: {key!r}")
        lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode("utf-8")


def encode_action(action: str, action_id: str, headers: Mapping[str, str] | None = None) -> bytes:
    pairs = [("Action", action), ("ActionID", action_id)]
    pairs += list((headers or {}).items())
    return encode(pairs)


def parse_line(line: str) -> tuple[str, str]:
    """`Key: Value` -> (Key, Value), leading blanks of the value skipped as Asterisk does."""
    key, _, value = line.partition(":")
    return key, value.lstrip(" \t")


@dataclass
class MessageReader:
    """Turns received bytes into messages; feed it whatever the socket returns."""

    expect_banner: bool = True
    banner: str | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _lines: list[tuple[str, str]] = field(default_factory=list)

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        out: list[AmiMessage] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    raise AmiProtocolError("AMI line too long")
                return out
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            line = raw.decode("utf-8", errors="replace")
            if self.expect_banner and self.banner is None:
                if not line.startswith(BANNER_PREFIX):
                    raise AmiProtocolError(f"not an AMI server: {line[:80]!r}")
                self.banner = line
                continue
            if line:
                if len(self._lines) >= MAX_HEADERS:
                    raise AmiProtocolError("AMI message has too many lines")
                self._lines.append(parse_line(line))
            elif self._lines:
                out.append(AmiMessage(tuple(self._lines)))
                self._lines = []


@dataclass
class ActionResult:
    """Collects the answer to one action: its Response and, for lists, the events that follow."""

    action: str
    action_id: str
    response: AmiMessage | None = None
    events: list[AmiMessage] = field(default_factory=list)
    complete: AmiMessage | None = None
    seq: int = -1  # position of the Response among every message the connection received

    @property
    def done(self) -> bool:
        if self.response is None:
            return False
        if (self.response.get("EventList") or "").lower() != "start":
            return True
        return self.complete is not None

    def add(self, message: AmiMessage, seq: int) -> None:
        if self.response is None and message.response is not None:
            self.response = message
            self.seq = seq
        elif message.event is not None and (message.get("EventList") or "").lower() in (
            "complete",
            "cancelled",
        ):
            self.complete = message
        else:
            self.events.append(message)

    @property
    def ok(self) -> bool:
        return self.response is not None and (self.response.response or "").lower() in (
            "success",
            "goodbye",
        )

    @property
    def message(self) -> str:
        """The response's own `Message:` (the first one)."""
        return (self.response.get("Message") if self.response else None) or ""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.response.get(name, default) if self.response else default
