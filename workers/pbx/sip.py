"""The `sip` adapter: publishes each user's profile as PIDF with SIP PUBLISH (RFC 3903).

One adapter serves one presence server and is used by one thread at a time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from core.errors import PbxError, options_error
from workers.pbx.base import PbxAdapter, PbxUserRecord, ProfileChange, Refreshing, Stateful
from workers.pbx.pidf import CONTENT_TYPE, build_pidf, document_for
from workers.pbx.sip_wire import (
    SipResponse,
    Transport,
    aor_of,
    digest_authorization,
    open_transport,
)

STATE_FORMAT = 1
_SIP_WORD = r"^[A-Za-z0-9.!%*_+`'~-]+$"
_HOST = r"^[A-Za-z0-9.:\[\]-]+$"


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


class SipAdapter(PbxAdapter, Refreshing, Stateful):
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
            raise options_error(exc, "pbx.options") from None
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

    # --- Stateful: what the worker keeps in Redis --------------------------------------------

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
        return aor_of(user, self.options.domain)

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
            etag=new_etag,
            expires_at=self._clock() + granted,
            body=full_body,
            profile=profile,
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

    def _send(
        self, user: str, body: str | None, etag: str | None, expires: int | None = None
    ) -> SipResponse:
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
                f"within {o.timeout:g}s",
                transient=True,
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
        # A timeout (408), a busy hop (480) or the server's own trouble (5xx) may pass; any
        # other 4xx/6xx means our request is wrong and sending it again will not help.
        transient = 500 <= response.status < 600 or response.status in (408, 480)
        # Retry-After: seconds, then optional comment and parameters (RFC 3261 20.33). With
        # the status, a 503 makes every job leave the PBX alone for that long.
        wait = (response.header("Retry-After") or "").split(";")[0].split("(")[0].strip()
        raise PbxError(
            what,
            transient=transient,
            status=response.status,
            retry_after=float(wait) if wait.isdigit() else None,
        )
