"""A TCP fault proxy on loopback, steered in-process: the network faults of a chaos test.

`FaultProxy(target_port)` listens on its own port and forwards every connection to the
target. A test switches it between modes at any time:

- `pass_through()`: bytes flow unchanged (with `latency()` seconds added per chunk, each way);
- `cut()`: existing connections are closed (FIN) and the port stops listening, so new ones
  are refused at once (ECONNREFUSED), as a stopped server;
- `black_hole()`: half-open; connections are accepted (new ones too) but nothing is forwarded
  or answered, as a host that froze or a firewall that drops silently;
- `reset()`: existing connections are reset (RST, SO_LINGER 0); new ones pass;
- `restore()`: back to pass-through, no latency.

No packaged tool does this here (toxiproxy is not installable); threads keep it independent of
the test's event loops. Bytes held during a black hole are dropped, never delivered late.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from emulator.harness.ports import free_port

CHUNK = 65536
POLL_SECONDS = 0.05  # how often pumps look at a mode change while a socket is quiet


class Mode(StrEnum):
    PASS = "pass"  # noqa: S105 - a mode name, not a password
    CUT = "cut"
    BLACK_HOLE = "black-hole"


@dataclass
class _Link:
    """One proxied connection: the client's socket and ours to the target."""

    client: socket.socket
    upstream: socket.socket | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]

    def close(self, *, rst: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in self.sockets():
            with contextlib.suppress(OSError):
                if rst:
                    # Linger 0: close() sends RST instead of FIN, as a crashed peer's kernel.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _close_listener(listener: socket.socket | None) -> None:
    """Stop listening now: shutdown wakes a thread blocked in accept(), close alone does not."""
    if listener is None:
        return
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


class FaultProxy:
    """`with FaultProxy(target_port) as proxy:` forwards 127.0.0.1:proxy.port to the target."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", name: str = "") -> None:
        self.target = (target_host, target_port)
        self.name = name or f"proxy->{target_port}"
        self.port = free_port()
        self._mode = Mode.PASS
        self._latency = 0.0
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0  # connections accepted, for tests and reports

    # -- control -----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pass_through(self) -> None:
        self._mode = Mode.PASS

    def latency(self, seconds: float) -> None:
        """Delay every chunk this long, each way (pass-through otherwise)."""
        self._latency = max(0.0, seconds)
        self._mode = Mode.PASS

    def cut(self) -> None:
        """Close every open connection and refuse new ones until restored."""
        with self._lock:
            self._mode = Mode.CUT
            listener, self._listener = self._listener, None
        _close_listener(listener)
        self._close_all(rst=False)

    def black_hole(self) -> None:
        """Accept, but forward and answer nothing: the peer waits for its own timeouts."""
        self._mode = Mode.BLACK_HOLE

    def reset(self) -> None:
        """RST every open connection; new connections pass."""
        self._close_all(rst=True)

    def restore(self) -> None:
        """Pass-through without latency. Connections held in a black hole are reset, since
        what they sent is gone and neither end could make sense of the stream again."""
        if self._mode == Mode.BLACK_HOLE:
            self._close_all(rst=True)
        self._latency = 0.0
        with self._lock:
            if self._mode == Mode.CUT and not self._stopped.is_set():
                self._listener = self._listen()
            self._mode = Mode.PASS

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    # -- lifecycle ---------------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(POLL_SECONDS)
        return listener

    def start(self) -> FaultProxy:
        self._listener = self._listen()
        self._thread = threading.Thread(target=self._accept, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            listener, self._listener = self._listener, None
        _close_listener(listener)
        self._close_all(rst=False)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the work ----------------------------------------------------------------------------

    def _close_all(self, *, rst: bool) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close(rst=rst)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:  # cut: nothing listens until restored
                self._stopped.wait(POLL_SECONDS)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                continue  # closed by cut() or stop()
            if self._mode == Mode.CUT:
                _Link(client).close(rst=True)  # accepted just before the cut
                continue
            self.accepted += 1
            link = _Link(client)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._serve, args=(link,), daemon=True).start()

    def _serve(self, link: _Link) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            link.close(rst=True)  # the target is down: the client sees it as refused
            return
        link.upstream = upstream
        if link.closed.is_set():  # cut or reset while connecting
            upstream.close()
            return
        for sock in link.sockets():
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pumps = [
            threading.Thread(target=self._pump, args=(link, link.client, link.upstream)),
            threading.Thread(target=self._pump, args=(link, link.upstream, link.client)),
        ]
        for pump in pumps:
            pump.daemon = True
            pump.start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(source, selectors.EVENT_READ)
            while not link.closed.is_set() and not self._stopped.is_set():
                if not selector.select(POLL_SECONDS):
                    continue
                data = source.recv(CHUNK)
                if not data:
                    break
                if self._mode == Mode.BLACK_HOLE:
                    continue  # swallowed: nothing reaches the other side
                if self._latency:
                    time.sleep(self._latency)
                if link.closed.is_set() or self._mode != Mode.PASS:
                    continue
                sink.sendall(data)
        except (OSError, ValueError):
            pass  # closed under us by a fault or by the other pump
        finally:
            selector.close()
            if not link.closed.is_set():
                link.close()
            with self._lock, contextlib.suppress(ValueError):
                self._links.remove(link)
