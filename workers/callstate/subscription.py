"""One dialog-event subscription (RFC 6665) of one extension: the SIP dialog it lives in,
the SUBSCRIBE it sends, what its answers and NOTIFYs say."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from workers.callstate.dialog_info import CONTENT_TYPE, DialogView
from workers.pbx.sip_wire import SipRequest, SipResponse, split_header_values, tag_of, uri_of

# RFC 6665 4.1.2.2: these answers to a refresh mean the subscription is gone.
GONE = frozenset({404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604})
TRANSIENT = frozenset({408, 480, 503})
# Subscription-State reasons (RFC 6665 4.1.3) after which subscribing again soon is pointless.
REFUSED_REASONS = frozenset({"rejected", "noresource"})


@dataclass
class Subscription:
    extension: str
    aor: str
    call_id: str = ""
    from_tag: str = ""
    to_tag: str | None = None  # set once the dialog exists (2xx or first NOTIFY)
    cseq: int = 0
    target: str = ""  # Request-URI of refreshes: the notifier's Contact
    route: list[str] = field(default_factory=list)
    expires_at: float = 0.0  # monotonic
    view: DialogView = field(default_factory=DialogView)
    failures: int = 0
    busy: bool = False  # a SUBSCRIBE of it is in flight
    sent_expires: int = 0  # the Expires of the last SUBSCRIBE
    want_full: bool = False  # a version was lost while a SUBSCRIBE was in flight

    @property
    def key(self) -> tuple[str, str]:
        """What a NOTIFY of this dialog carries: its Call-ID and our tag (in its To)."""
        return (self.call_id, self.from_tag)

    @property
    def established(self) -> bool:
        return self.to_tag is not None

    def start(self) -> None:
        """A new dialog; its first full NOTIFY will resync this extension."""
        self.call_id, self.from_tag = uuid.uuid4().hex, uuid.uuid4().hex[:12]
        self.to_tag, self.cseq, self.target, self.route = None, 0, self.aor, []
        self.view, self.want_full = DialogView(), False

    def request_headers(
        self,
        *,
        from_uri: str,
        contact: str,
        expires: int,
        user_agent: str,
        auth: tuple[str, str] | None,
    ) -> list[tuple[str, str]]:
        """The next SUBSCRIBE's headers (in the dialog once it exists)."""
        self.cseq += 1
        self.sent_expires = expires
        to = f"<{self.aor}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        headers = [
            ("Max-Forwards", "70"),
            *[("Route", r) for r in self.route],
            ("From", f"<{from_uri}>;tag={self.from_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} SUBSCRIBE"),
            ("Contact", f"<{contact}>"),
            ("Event", "dialog"),
            ("Accept", CONTENT_TYPE),
            ("Expires", str(expires)),
            ("User-Agent", user_agent),
        ]
        if auth is not None:
            headers.append(auth)
        return headers

    def take_answer(self, response: SipResponse) -> None:
        """The 2xx to a new subscription makes the dialog (RFC 3261 12.1.2)."""
        self.to_tag = self.to_tag or tag_of(response.header("to"))
        self.target = uri_of(response.header("contact")) or self.target
        self.route = list(reversed(split_header_values(response.all("record-route"))))

    def take_notify(self, request: SipRequest) -> None:
        """A NOTIFY that overtook the 2xx makes the dialog as well (RFC 6665 4.1.2.4)."""
        if self.to_tag is None:
            self.to_tag = tag_of(request.header("from"))
            self.target = uri_of(request.header("contact")) or self.target


def subscription_state(header: str) -> tuple[str, dict[str, str]]:
    """`active;expires=600` -> ("active", {"expires": "600"})."""
    value, *params = (p.strip() for p in header.split(";"))
    args = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
    return value.lower(), args


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
