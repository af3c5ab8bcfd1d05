"""A tiny SIP watcher for tests: SUBSCRIBEs to presence over UDP and collects the NOTIFYs.

Written apart from workers/pbx/sip.py on purpose, so the adapter is not checked by itself.
"""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SipMessage:
    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # names in lower case
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "l": "content-length",
    "c": "content-type",
    "o": "event",
    "m": "contact",
}


def parse(data: bytes) -> SipMessage:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.append((_COMPACT.get(key, key), value.strip()))
    return SipMessage(lines[0], headers, body)


class PresenceWatcher:
    """Subscribes to one presentity; every NOTIFY is answered 200 and queued."""

    def __init__(self, server: tuple[str, int], presentity: str, expires: int = 600) -> None:
        self.server = server
        self.presentity = presentity
        self.expires = expires
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.notifies: queue.Queue[SipMessage] = queue.Queue()
        self.responses: queue.Queue[SipMessage] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sip-watcher", daemon=True)
        self._thread.start()

    def subscribe(self, timeout: float = 5.0) -> SipMessage:
        """Send SUBSCRIBE and return its final response."""
        branch = "z9hG4bK" + uuid.uuid4().hex
        request = (
            f"SUBSCRIBE {self.presentity} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:watcher@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{self.presentity}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@watcher\r\n"
            "CSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:watcher@127.0.0.1:{self.port}>\r\n"
            "Event: presence\r\n"
            "Accept: application/pidf+xml\r\n"
            f"Expires: {self.expires}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(request.encode(), self.server)
        while True:
            response = self.responses.get(timeout=timeout)
            if int(response.start_line.split()[1]) >= 200:
                return response

    def next_notify(self, timeout: float = 5.0) -> SipMessage:
        return self.notifies.get(timeout=timeout)

    def wait_for(self, check: Callable[[SipMessage], bool], timeout: float = 5.0) -> SipMessage:
        """The first NOTIFY (from now on) that passes `check`; queue.Empty after `timeout`."""
        while True:
            notify = self.notifies.get(timeout=timeout)
            if check(notify):
                return notify

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
            if message.start_line.startswith("SIP/2.0"):
                self.responses.put(message)
            elif message.start_line.startswith("NOTIFY"):
                self.sock.sendto(self._ok(message), peer)
                self.notifies.put(message)

    @staticmethod
    def _ok(request: SipMessage) -> bytes:
        lines = ["SIP/2.0 200 OK"]
        lines += [f"Via: {v}" for v in request.all("via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {request.header(name)}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
