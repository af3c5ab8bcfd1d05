"""The SIP wire: message parsing and building, UDP/TCP client transports, digest auth.

The `sip` adapter uses the transports; the `blf` call-state source its own asyncio agent.
"""

from __future__ import annotations

import hashlib
import re
import select
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from core.errors import PbxError

T2 = 4.0  # RFC 3261: cap of the non-INVITE retransmit interval
MAX_MESSAGE = 65535
# RFC 3261 7.3.3 compact header names, so lookups see one spelling.
_COMPACT = {
    "i": "call-id",
    "l": "content-length",
    "v": "via",
    "c": "content-type",
    "f": "from",
    "t": "to",
    "m": "contact",
    "e": "content-encoding",
    "o": "event",
}
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)
_TAG = re.compile(r";\s*tag=([^;,\s>]+)", re.IGNORECASE)
_USER_SAFE = "-_.!~*'()&=+$,;?/"  # RFC 3261 unreserved and user-unreserved characters


_STATUS_CODE = re.compile(r"[1-6][0-9]{2}")


def aor_of(user: str, domain: str) -> str:
    """sip:<user>@<domain>; a user that already names a host keeps it."""
    name, at, host = user.rpartition("@")
    if not at:
        name, host = user, domain
    return f"sip:{quote(name, safe=_USER_SAFE)}@{quote(host, safe='.:[]-')}"


def tag_of(value: str | None) -> str | None:
    """The tag parameter of a From or To header value."""
    match = _TAG.search(value.rpartition(">")[2] if value and ">" in value else value or "")
    return match.group(1) if match else None


def uri_of(value: str | None) -> str | None:
    """The URI of a Contact or Route value: inside <...>, else up to the first parameter."""
    if not value:
        return None
    value = value.strip()
    if "<" in value:
        return value.partition("<")[2].partition(">")[0].strip() or None
    return value.partition(";")[0].strip() or None


def split_header_values(values: list[str]) -> list[str]:
    """Comma-separated header values (Record-Route) one by one, commas inside <> kept."""
    out: list[str] = []
    for value in values:
        depth, start = 0, 0
        for i, char in enumerate(value):
            if char == "<":
                depth += 1
            elif char == ">":
                depth -= 1
            elif char == "," and depth == 0:
                out.append(value[start:i].strip())
                start = i + 1
        out.append(value[start:].strip())
    return [v for v in out if v]


class _Headers:
    """Header look-ups shared by requests and responses; names are stored in lower case."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_int(self, name: str) -> int | None:
        value = self.header(name)
        try:
            return int(value.strip()) if value is not None else None
        except ValueError:
            return None

    def all(self, name: str) -> list[str]:
        """Every value of a header that may repeat (Via, Record-Route), in message order."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]


@dataclass
class SipResponse(_Headers):
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names
    body: bytes = b""


@dataclass
class SipRequest(_Headers):
    method: str
    uri: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names
    body: bytes = b""


def _split(data: bytes) -> tuple[list[str], list[tuple[str, str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
    return lines[0].split(" ", 2), headers, body


def parse_response(data: bytes) -> SipResponse | None:
    """A response, or None for anything else (a request, a keep-alive, garbage)."""
    parts, headers, body = _split(data)
    # Three ASCII digits (RFC 3261 7.2): "²⁰⁰".isdigit() holds too, and int() refuses it.
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not _STATUS_CODE.fullmatch(parts[1]):
        return None
    return SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)


def parse_message(data: bytes) -> SipResponse | SipRequest | None:
    """A response or a request; None for a keep-alive or garbage."""
    response = parse_response(data)
    if response is not None:
        return response
    parts, headers, body = _split(data)
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        return None
    return SipRequest(parts[0].upper(), parts[1], headers, body)


def branch_of(message: SipResponse | SipRequest) -> str | None:
    """The branch of the top Via: what ties a response to its transaction."""
    via = message.header("via")
    match = _BRANCH.search(via) if via else None
    return match.group(1) if match else None


def build_response(
    request: SipRequest,
    status: int,
    reason: str,
    headers: list[tuple[str, str]] | None = None,
    to_tag: str | None = None,
    payload: bytes = b"",
) -> bytes:
    """RFC 3261 8.2.6.2: the request's Vias, From, Call-ID and CSeq; To gains `to_tag`."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in request.all("via")]
    to = request.header("to") or ""
    if to_tag and ";tag=" not in to.lower():
        to += f";tag={to_tag}"
    for name in ("From", "To", "Call-ID", "CSeq"):
        lines.append(f"{name}: {to if name == 'To' else request.header(name) or ''}")
    lines += [f"{k}: {v}" for k, v in headers or []]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


def build_request(
    method: str, uri: str, via: str, headers: list[tuple[str, str]], payload: bytes
) -> bytes:
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


class Transport(Protocol):
    def request(
        self, method: str, uri: str, headers: list[tuple[str, str]], payload: bytes
    ) -> SipResponse: ...

    def close(self) -> None: ...


class _UdpTransport:
    def __init__(self, host: str, port: int, bind_host: str, timeout: float, t1: float) -> None:
        self.timeout, self.t1 = timeout, t1
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_host, 0))
        # Connected, so an ICMP port-unreachable surfaces as ConnectionRefusedError at once.
        self.sock.connect((host, port))
        self.local = "{}:{}".format(*self.sock.getsockname()[:2])

    def request(
        self, method: str, uri: str, headers: list[tuple[str, str]], payload: bytes
    ) -> SipResponse:
        branch = "z9hG4bK" + uuid.uuid4().hex
        data = build_request(
            method, uri, f"SIP/2.0/UDP {self.local};branch={branch};rport", headers, payload
        )
        start = time.monotonic()
        deadline = start + self.timeout
        interval = self.t1
        next_send = start
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError
            if now >= next_send:
                # RFC 3261 17.1.2.2 timer E: T1, 2*T1, ... capped at T2; timer F = the deadline.
                self.sock.send(data)
                next_send = now + interval
                interval = min(interval * 2, T2)
            ready, _, _ = select.select([self.sock], [], [], min(next_send, deadline) - now)
            if not ready:
                continue
            response = parse_response(self.sock.recv(MAX_MESSAGE))
            if response is None or branch_of(response) != branch:
                continue  # a late answer to an earlier transaction
            if response.status >= 200:
                return response
            next_send, interval = time.monotonic() + T2, T2  # provisional: keep it alive at T2

    def close(self) -> None:
        self.sock.close()


class _TcpTransport:
    def __init__(self, host: str, port: int, bind_host: str, timeout: float) -> None:
        self.address, self.bind_host, self.timeout = (host, port), bind_host, timeout
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(
            self.address, timeout=self.timeout, source_address=(self.bind_host, 0)
        )
        self.local = "{}:{}".format(*self.sock.getsockname()[:2])
        self.buffer = b""
        self.used = False

    def request(
        self, method: str, uri: str, headers: list[tuple[str, str]], payload: bytes
    ) -> SipResponse:
        try:
            return self._request(method, uri, headers, payload)
        except ConnectionError:
            if not self.used or self.buffer:
                raise
            # The server closed an idle connection (or restarted): the request never got a
            # byte of answer, so one retry on a fresh connection is safe.
            self.sock.close()
            self._connect()
            return self._request(method, uri, headers, payload)

    def _request(
        self, method: str, uri: str, headers: list[tuple[str, str]], payload: bytes
    ) -> SipResponse:
        branch = "z9hG4bK" + uuid.uuid4().hex
        data = build_request(
            method, uri, f"SIP/2.0/TCP {self.local};branch={branch};rport", headers, payload
        )
        deadline = time.monotonic() + self.timeout
        self.sock.sendall(data)
        while True:
            response = parse_response(self._read_message(deadline))
            if response is not None and branch_of(response) == branch and response.status >= 200:
                self.used = True
                return response

    def _read_message(self, deadline: float) -> bytes:
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")  # RFC 5626 CRLF keep-alives
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = parse_response(self.buffer[:end] + b"\r\n\r\n")
                length = (head.header_int("content-length") if head else None) or 0
                if head is None:  # a request: only its Content-Length matters for framing
                    match = re.search(
                        rb"\r\n(?:content-length|l)\s*:\s*(\d+)", self.buffer[:end], re.IGNORECASE
                    )
                    length = int(match.group(1)) if match else 0
                total = end + 4 + length
                if len(self.buffer) >= total:
                    message, self.buffer = self.buffer[:total], self.buffer[total:]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(MAX_MESSAGE)
            if not chunk:
                raise ConnectionResetError(104, "connection closed by the server")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def open_transport(
    kind: str, host: str, port: int, bind_host: str, *, timeout: float, t1: float
) -> Transport:
    if kind == "tcp":
        return _TcpTransport(host, port, bind_host, timeout)
    return _UdpTransport(host, port, bind_host, timeout, t1)


def _challenge_params(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        raise PbxError(f"sip: unsupported auth scheme {scheme!r}", transient=False)
    pairs = re.findall(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest)
    return {k.lower(): quoted or bare for k, quoted, bare in pairs}


def digest_authorization(
    challenge: str, *, method: str, uri: str, username: str, password: str
) -> str:
    """An RFC 2617 MD5 answer (qop=auth when offered) to one Digest challenge."""
    params = _challenge_params(challenge)
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise PbxError(f"sip: unsupported digest algorithm {algorithm!r}", transient=False)
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()

    ha1 = md5(f"{username}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        "algorithm=MD5",
    ]
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    elif qops:
        raise PbxError(f"sip: unsupported digest qop {params['qop']!r}", transient=False)
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)
