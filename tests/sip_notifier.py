"""A dialog-event notifier for tests that answers the way the recorded Asterisk 20 did.

chan_sip accepts `SUBSCRIBE Event: dialog` with 200, then NOTIFYs full state only: one
`<dialog id="<ext>">` whose state is early/confirmed/terminated, a version counting up per
subscription, no call-id. Refreshes get 200 and a full NOTIFY; a subscription it does not
know gets 481. Tests can also send any NOTIFY (partial, terminated, for unknown dialogs).
Written apart from workers/pbx/ on purpose (it reuses the test watcher's parser).
"""

from __future__ import annotations

import socket
import threading
import uuid
from dataclasses import dataclass, field

from tests.sip_watcher import SipMessage, parse

TIMEOUT = 5.0


def asterisk_body(extension: str, version: int, state: str, direction: str | None) -> str:
    """The document as chan_sip writes it (sip-notify-bodies.txt)."""
    attr = f' direction="{direction}"' if direction else ""
    return (
        '<?xml version="1.0"?>\n'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
        f'version="{version}" state="full" entity="sip:{extension}@127.0.0.1">\n'
        f'<dialog id="{extension}"{attr}>\n<state>{state}</state>\n</dialog>\n</dialog-info>\n'
    )


def _tag(value: str | None) -> str | None:
    if not value or ";tag=" not in value:
        return None
    return value.split(";tag=", 1)[1].split(";")[0].strip()


@dataclass
class Watch:
    """One subscription the notifier holds."""

    extension: str
    call_id: str
    watcher_tag: str
    our_tag: str
    contact: tuple[str, int]
    version: int = 0
    cseq: int = 1
    refreshes: int = 0


@dataclass
class Received:
    subscribes: list[SipMessage] = field(default_factory=list)
    answers: dict[tuple[str, int], int] = field(default_factory=dict)  # (call-id, cseq) -> code


class AsteriskNotifier:
    """One UDP socket on loopback, run in a thread; use it as a context manager."""

    def __init__(self, *, notify_before_ok: bool = False) -> None:
        self.notify_before_ok = notify_before_ok  # send the first NOTIFY ahead of the 200
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.states: dict[str, tuple[str, str | None]] = {}  # extension -> (state, direction)
        self.watches: dict[str, Watch] = {}  # by Call-ID
        self.received = Received()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sip-notifier", daemon=True)

    def __enter__(self) -> AsteriskNotifier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    # --- control -------------------------------------------------------------------------

    def watching(self, extension: str) -> list[Watch]:
        with self._lock:
            return [w for w in self.watches.values() if w.extension == extension]

    def wait_for(self, check: object, timeout: float = TIMEOUT) -> None:
        """Wait until `check()` holds; checked whenever a message arrives."""
        assert callable(check)
        with self._lock:
            if not self._lock.wait_for(check, timeout=timeout):
                raise AssertionError("notifier condition not met in time")

    def set_state(self, extension: str, state: str, direction: str | None = None) -> list[int]:
        """Change the extension's dialog and NOTIFY every watcher; their answers."""
        with self._lock:
            self.states[extension] = (state, direction)
            watches = [w for w in self.watches.values() if w.extension == extension]
        return [self.notify(w, self._full(w)) for w in watches]

    def forget_all(self) -> None:
        """Like a restart: every subscription is gone, so refreshes get 481."""
        with self._lock:
            self.watches.clear()

    def notify(self, watch: Watch, body: str, state: str = "active;expires=300") -> int:
        """Send one NOTIFY in the watch's dialog and wait for its answer."""
        with self._lock:
            watch.cseq += 1
            cseq = watch.cseq
        self._send_notify(watch, cseq, body, state)
        key = (watch.call_id, cseq)
        self.wait_for(lambda: key in self.received.answers)
        return self.received.answers[key]

    def next_version(self, watch: Watch) -> int:
        with self._lock:
            watch.version += 1
            return watch.version

    # --- the wire ------------------------------------------------------------------------

    def _full(self, watch: Watch) -> str:
        state, direction = self.states.get(watch.extension, ("terminated", None))
        return asterisk_body(watch.extension, self.next_version(watch) - 1, state, direction)

    def _send_notify(self, watch: Watch, cseq: int, body: str, state: str) -> None:
        lines = [
            f"NOTIFY sip:watcher@{watch.contact[0]}:{watch.contact[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex}",
            "Max-Forwards: 70",
            f"From: <sip:{watch.extension}@127.0.0.1>;tag={watch.our_tag}",
            f"To: <sip:watcher@127.0.0.1>;tag={watch.watcher_tag}",
            f"Contact: <sip:{watch.extension}@127.0.0.1:{self.port}>",
            f"Call-ID: {watch.call_id}",
            f"CSeq: {cseq} NOTIFY",
            "User-Agent: Asterisk PBX 20",
            "Event: dialog",
            "Content-Type: application/dialog-info+xml",
            f"Subscription-State: {state}",
            f"Content-Length: {len(body.encode())}",
        ]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), watch.contact)

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            message = parse(data)
            with self._lock:
                if message.start_line.startswith("SIP/2.0"):
                    call_id = message.header("call-id") or ""
                    cseq = int((message.header("cseq") or "0").split()[0])
                    self.received.answers[(call_id, cseq)] = int(message.start_line.split()[1])
                elif message.start_line.startswith("SUBSCRIBE"):
                    self.received.subscribes.append(message)
                    self._on_subscribe(message, peer)
                self._lock.notify_all()

    def _on_subscribe(self, request: SipMessage, peer: tuple[str, int]) -> None:
        call_id = request.header("call-id") or ""
        watch = self.watches.get(call_id)
        to_tag = _tag(request.header("to"))
        if to_tag is not None and (watch is None or watch.our_tag != to_tag):
            self._reply(request, peer, "481 Call/Transaction Does Not Exist", None)
            return
        if watch is None:
            contact = (request.header("contact") or "").split("@", 1)[1].split(">")[0]
            host, _, port = contact.split(";")[0].partition(":")
            ext = request.start_line.split()[1].split(":", 1)[1].split("@")[0]
            watch = Watch(
                ext,
                call_id,
                _tag(request.header("from")) or "",
                uuid.uuid4().hex[:8],
                (host, int(port)),
            )
            self.watches[call_id] = watch
        else:
            watch.refreshes += 1
        watch.cseq += 1
        cseq = watch.cseq
        body = self._full(watch)
        if self.notify_before_ok and watch.refreshes == 0:
            self._send_notify(watch, cseq, body, "active;expires=300")
            self._reply(request, peer, "200 OK", watch)
            return
        self._reply(request, peer, "200 OK", watch)
        self._send_notify(watch, cseq, body, "active;expires=300")

    def _reply(
        self, request: SipMessage, peer: tuple[str, int], status: str, watch: Watch | None
    ) -> None:
        to = request.header("to") or ""
        if watch is not None and ";tag=" not in to:
            to += f";tag={watch.our_tag}"
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {v}" for v in request.all("via")]
        lines += [
            f"From: {request.header('from')}",
            f"To: {to}",
            f"Call-ID: {request.header('call-id')}",
            f"CSeq: {request.header('cseq')}",
        ]
        if watch is not None:
            lines += [
                f"Expires: {request.header('expires') or '300'}",
                f"Contact: <sip:{watch.extension}@127.0.0.1:{self.port}>",
            ]
        lines.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), peer)
