"""The `sip` adapter: publishes each user's profile as PIDF with SIP PUBLISH (RFC 3903).

One adapter serves one presence server and is used by one thread at a time.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from core.errors import ConfigError, PbxError
from workers.pbx.base import PbxUserRecord, ProfileChange
from workers.pbx.pidf import CONTENT_TYPE, build_pidf, document_for

STATE_FORMAT = 1
_SIP_WORD = r"^[A-Za-z0-9.!%*_+`'~-]+$"
_HOST = r"^[A-Za-z0-9.:\[\]-]+$"
_USER_SAFE = "-_.!~*'()&=+$,;?/"  # RFC 3261 unreserved and user-unreserved characters


class SipOptions(BaseModel):
    """`[tenants.pbx.options]` for adapter = "sip"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(pattern=_HOST)  # where PUBLISH is sent
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    domain: str = Field(pattern=_HOST)  # AOR host: sip:<user>@<domain>
    from_user: str = Field(default="presence-bridge", pattern=_SIP_WORD)
    auth_user: str | None = Field(default=None, pattern=_SIP_WORD)  # digest; else from_user
    expires: int = Field(default=3600, ge=60, le=86400)
    refresh_at: float = Field(default=0.8, gt=0.1, lt=1.0)  # share of the lifetime
    bind_host: str = Field(default="127.0.0.1", pattern=_HOST)
    timeout: float = Field(default=8.0, gt=0, le=64)  # one transaction, retransmits included
    t1: float = Field(default=0.5, gt=0, le=5)  # RFC 3261 T1, first UDP retransmit
    # Refresh by re-sending the body; for servers that lose it on a body-less refresh
    # (Kamailio 5.6 with publ_cache=2).
    refresh_with_body: bool = False


@dataclass
class Publication:
    """What the server holds for one user: our entity tag and when it lapses."""

    etag: str
    expires_at: float  # wall clock (time.time), so another process can import it
    body: str
    profile: str
    lifetime: int  # seconds the server granted; the refresh point is a share of it


class SipAdapter:
    name = "sip"

    def __init__(
        self,
        options: Mapping[str, Any],
        secret: SecretStr | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self.options = SipOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ConfigError([
                f"pbx.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors()
            ]) from None
        self._secret = secret
        self._clock = clock
        self._transport: Transport | None = None
        self._publications: dict[str, Publication] = {}
        self._min_expires = 0  # learned from a 423
        # What was sent and why, for metrics and tests: initial, modify, refresh, withdraw,
        # stale_etag, interval_too_brief, auth_challenge.
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        o = self.options
        return f"SipAdapter({o.transport}://{o.host}:{o.port}, domain={o.domain!r})"

    # --- the PbxAdapter protocol -------------------------------------------------------------

    def list_users(self) -> list[PbxUserRecord] | None:
        return None  # a presence server keeps no user directory we could read

    def apply_profile(self, change: ProfileChange) -> None:
        body = build_pidf(document_for(change, self.aor(change.user))).decode("utf-8")
        # Always send, even when the body is unchanged: after a server restart this is what
        # puts the state back (the stale ETag draws a 412 and a fresh publication).
        self._publish(change.user, body, change.profile)

    def read_profile(self, user: str) -> str | None:
        """The profile we published and the server still holds; None once it has lapsed."""
        pub = self._live(user)
        return pub.profile if pub else None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # --- refreshes ---------------------------------------------------------------------------

    def refresh(self, user: str) -> None:
        """Extend the user's publication with a body-less PUBLISH (RFC 3903 section 4.4)."""
        pub = self._live(user)
        if pub is None:
            raise PbxError(f"sip: nothing published for {user!r} to refresh", transient=False)
        self._publish(user, pub.body if self.options.refresh_with_body else None, pub.profile)

    def refresh_due(self, now: float | None = None) -> list[str]:
        """Refresh every publication past its refresh point; returns the users refreshed.

        Every due user is tried; if any failed, one PbxError says how many after the loop.
        """
        now = self._clock() if now is None else now
        due = [u for u, p in self._publications.items() if now >= self._refresh_point(p)]
        done: list[str] = []
        errors: list[PbxError] = []
        for user in due:
            try:
                if now >= self._publications[user].expires_at:
                    pub = self._publications.pop(user)  # lapsed: publish its body anew
                    self._publish(user, pub.body, pub.profile)
                else:
                    self.refresh(user)
                done.append(user)
            except PbxError as exc:
                errors.append(exc)
        if errors:
            raise PbxError(
                f"sip: {len(errors)} of {len(due)} refreshes failed, first: {errors[0]}",
                transient=all(e.transient for e in errors),
            )
        return done

    def withdraw(self, user: str) -> None:
        """Remove the user's publication now (PUBLISH with Expires: 0), e.g. when disabled."""
        pub = self._publications.pop(user, None)
        if pub is None or self._clock() >= pub.expires_at:
            return
        response = self._send(user, None, pub.etag, expires=0)
        if response.status == 412:
            return  # the server no longer holds it: that is what we wanted
        try:
            self._raise_for(response, user)
        except PbxError:
            self._publications[user] = pub  # keep it so that a retry can still withdraw it
            raise
        self.counts["withdraw"] += 1

    def publication(self, user: str) -> Publication | None:
        return self._publications.get(user)

    # --- state for the worker to keep in Redis -----------------------------------------------

    def export_state(self) -> str:
        users = {u: asdict(p) for u, p in self._publications.items()}
        return json.dumps({"format": STATE_FORMAT, "users": users}, sort_keys=True)

    def import_state(self, data: str) -> None:
        raw = json.loads(data)
        if raw.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown sip state format {raw.get('format')!r}")
        try:
            self._publications = {u: Publication(**p) for u, p in raw["users"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed sip state: {exc}") from None

    # --- internals ---------------------------------------------------------------------------

    def aor(self, user: str) -> str:
        """sip:<user>@<domain>; a user that already names a host keeps it."""
        name, at, host = user.rpartition("@")
        if not at:
            name, host = user, self.options.domain
        return f"sip:{quote(name, safe=_USER_SAFE)}@{quote(host, safe='.:[]-')}"

    def _refresh_point(self, pub: Publication) -> float:
        return pub.expires_at - pub.lifetime * (1 - self.options.refresh_at)

    def _live(self, user: str) -> Publication | None:
        pub = self._publications.get(user)
        if pub is not None and self._clock() >= pub.expires_at:
            return None
        return pub

    def _publish(self, user: str, body: str | None, profile: str) -> None:
        """Initial, modify or (body None) refresh PUBLISH, recovering from 412 and 423."""
        pub = self._live(user)
        etag = pub.etag if pub else None
        full_body = body if body is not None else (pub.body if pub else "")
        if etag is None and not full_body:
            raise PbxError(f"sip: nothing to publish for {user!r}", transient=False)
        for _ in range(3):
            kind = "initial" if etag is None else ("refresh" if body is None else "modify")
            self.counts[kind] += 1
            response = self._send(user, body, etag)
            if response.status == 412 and etag is not None:
                # The server forgot our ETag (restart, expiry): start a new publication.
                self.counts["stale_etag"] += 1
                self._publications.pop(user, None)
                etag, body = None, full_body
                continue
            if response.status == 423 and self._learn_min_expires(response):
                self.counts["interval_too_brief"] += 1
                continue
            break
        self._raise_for(response, user)
        new_etag = response.header("sip-etag")
        if not new_etag:
            raise PbxError("sip: 2xx to PUBLISH without SIP-ETag", transient=False)
        granted = response.header_int("expires") or self._expires()
        self._publications[user] = Publication(
            etag=new_etag, expires_at=self._clock() + granted, body=full_body, profile=profile,
            lifetime=granted,
        )

    def _learn_min_expires(self, response: SipResponse) -> bool:
        """RFC 3903 section 6: retry a 423 with at least the server's Min-Expires."""
        min_expires = response.header_int("min-expires")
        if min_expires is None or min_expires <= self._expires():
            return False
        self._min_expires = min_expires
        return True

    def _expires(self) -> int:
        return max(self.options.expires, self._min_expires)

    def _send(self, user: str, body: str | None, etag: str | None,
              expires: int | None = None) -> SipResponse:
        aor = self.aor(user)
        lifetime = self._expires() if expires is None else expires
        extra = [("Event", "presence"), ("Expires", str(lifetime))]
        if etag is not None:
            extra.append(("SIP-If-Match", etag))
        payload = body.encode("utf-8") if body is not None else b""
        if body is not None:
            extra.append(("Content-Type", CONTENT_TYPE))
        call_id = uuid.uuid4().hex
        tag = uuid.uuid4().hex[:10]
        response = self._transact(aor, call_id, tag, 1, extra, payload)
        if response.status in (401, 407) and self._secret is not None:
            # RFC 3261 22.2: the same request again, with credentials, as a new transaction.
            self.counts["auth_challenge"] += 1
            www = response.status == 401
            challenge = response.header("www-authenticate" if www else "proxy-authenticate")
            answer_header = "Authorization" if www else "Proxy-Authorization"
            if challenge is None:
                raise PbxError(f"sip: {response.status} without a challenge", transient=False)
            credentials = digest_authorization(
                challenge,
                method="PUBLISH",
                uri=aor,
                username=self.options.auth_user or self.options.from_user,
                password=self._secret.get_secret_value(),
            )
            extra = [*extra, (answer_header, credentials)]
            response = self._transact(aor, call_id, tag, 2, extra, payload)
        return response

    def _transact(
        self,
        aor: str,
        call_id: str,
        tag: str,
        cseq: int,
        extra: list[tuple[str, str]],
        payload: bytes,
    ) -> SipResponse:
        o = self.options
        transport = self._connect()
        from_uri = f"sip:{o.from_user}@{o.domain}"
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"<{from_uri}>;tag={tag}"),
            ("To", f"<{aor}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} PUBLISH"),
            ("User-Agent", "presence-bridge"),
            *extra,
        ]
        try:
            return transport.request("PUBLISH", aor, headers, payload)
        except TimeoutError:
            self.close()  # a TCP stream may hold half a response; start clean next time
            raise PbxError(
                f"sip: no final response from {o.host}:{o.port}/{o.transport} "
                f"within {o.timeout:g}s", transient=True
            ) from None
        except OSError as exc:
            self.close()
            raise PbxError(
                f"sip: cannot reach {o.host}:{o.port}/{o.transport}: {exc.strerror or exc}",
                transient=True,
            ) from None

    def _connect(self) -> Transport:
        if self._transport is None:
            o = self.options
            try:
                self._transport = open_transport(
                    o.transport, o.host, o.port, o.bind_host, timeout=o.timeout, t1=o.t1
                )
            except OSError as exc:
                raise PbxError(
                    f"sip: cannot reach {o.host}:{o.port}/{o.transport}: {exc.strerror or exc}",
                    transient=True,
                ) from None
        return self._transport

    def _raise_for(self, response: SipResponse, user: str) -> None:
        if 200 <= response.status < 300:
            return
        what = f"sip: PUBLISH for {user!r} answered {response.status} {response.reason}"
        # 408/480/5xx/6xx-free: the server or a hop is unwell; anything else is our request.
        # A timeout (408), a busy hop (480) or the server's own trouble (5xx) may pass; any
        # other 4xx/6xx means our request is wrong and sending it again will not help.
        transient = 500 <= response.status < 600 or response.status in (408, 480)
        raise PbxError(what, transient=transient)


# --- the wire: messages, transports, digest ----------------------------------------------------

T2 = 4.0  # RFC 3261: cap of the non-INVITE retransmit interval
MAX_MESSAGE = 65535
# RFC 3261 7.3.3 compact header names, so lookups see one spelling.
_COMPACT = {"i": "call-id", "l": "content-length", "v": "via", "c": "content-type",
            "f": "from", "t": "to", "m": "contact", "e": "content-encoding", "o": "event"}
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)


@dataclass
class SipResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_int(self, name: str) -> int | None:
        value = self.header(name)
        try:
            return int(value.strip()) if value is not None else None
        except ValueError:
            return None


def parse_response(data: bytes) -> SipResponse | None:
    """A response, or None for anything else (a request, a keep-alive, garbage)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
    return SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)


def _branch_of(response: SipResponse) -> str | None:
    via = response.header("via")
    match = _BRANCH.search(via) if via else None
    return match.group(1) if match else None


def build_request(method: str, uri: str, via: str, headers: list[tuple[str, str]],
                  payload: bytes) -> bytes:
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


class Transport(Protocol):
    def request(self, method: str, uri: str, headers: list[tuple[str, str]],
                payload: bytes) -> SipResponse: ...

    def close(self) -> None: ...


class _UdpTransport:
    def __init__(self, host: str, port: int, bind_host: str, timeout: float, t1: float) -> None:
        self.timeout, self.t1 = timeout, t1
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_host, 0))
        # Connected, so an ICMP port-unreachable surfaces as ConnectionRefusedError at once.
        self.sock.connect((host, port))
        self.local = "{}:{}".format(*self.sock.getsockname()[:2])

    def request(self, method: str, uri: str, headers: list[tuple[str, str]],
                payload: bytes) -> SipResponse:
        branch = "z9hG4bK" + uuid.uuid4().hex
        data = build_request(method, uri, f"SIP/2.0/UDP {self.local};branch={branch};rport",
                             headers, payload)
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
            if response is None or _branch_of(response) != branch:
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
        self.sock = socket.create_connection(self.address, timeout=self.timeout,
                                             source_address=(self.bind_host, 0))
        self.local = "{}:{}".format(*self.sock.getsockname()[:2])
        self.buffer = b""
        self.used = False

    def request(self, method: str, uri: str, headers: list[tuple[str, str]],
                payload: bytes) -> SipResponse:
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

    def _request(self, method: str, uri: str, headers: list[tuple[str, str]],
                 payload: bytes) -> SipResponse:
        branch = "z9hG4bK" + uuid.uuid4().hex
        data = build_request(method, uri, f"SIP/2.0/TCP {self.local};branch={branch};rport",
                             headers, payload)
        deadline = time.monotonic() + self.timeout
        self.sock.sendall(data)
        while True:
            response = parse_response(self._read_message(deadline))
            if response is not None and _branch_of(response) == branch and response.status >= 200:
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
                    match = re.search(rb"\r\n(?:content-length|l)\s*:\s*(\d+)",
                                      self.buffer[:end], re.IGNORECASE)
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


def open_transport(kind: str, host: str, port: int, bind_host: str, *, timeout: float,
                   t1: float) -> Transport:
    if kind == "tcp":
        return _TcpTransport(host, port, bind_host, timeout)
    return _UdpTransport(host, port, bind_host, timeout, t1)


def _challenge_params(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        raise PbxError(f"sip: unsupported auth scheme {scheme!r}", transient=False)
    pairs = re.findall(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest)
    return {k.lower(): quoted or bare for k, quoted, bare in pairs}


def digest_authorization(challenge: str, *, method: str, uri: str, username: str,
                         password: str) -> str:
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
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"',
              f'uri="{uri}"', "algorithm=MD5"]
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
