"""The TCP fault proxy, over real loopback sockets: each mode as a client meets it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from emulator.harness.faultproxy import FaultProxy, Mode
from emulator.harness.processes import wait_for


class EchoServer:
    """A loopback TCP server that sends back whatever it receives."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.received = 0  # bytes that reached the server
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                self.received += len(data)
                conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.port) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def round_trip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def test_pass_through_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello") == b"hello"


def test_latency_holds_the_answer_back_then_delivers_it(proxy: FaultProxy) -> None:
    proxy.latency(1.0)
    with connect(proxy) as sock:
        sock.sendall(b"slow")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        sock.settimeout(10)
        assert sock.recv(4096) == b"slow"


def test_cut_closes_open_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        proxy.cut()
        assert sock.recv(4096) == b""  # the peer closed


def test_cut_refuses_new_connections(proxy: FaultProxy) -> None:
    proxy.cut()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)


def test_restore_after_a_cut_accepts_again(proxy: FaultProxy) -> None:
    proxy.cut()
    proxy.restore()
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"


def test_black_hole_accepts_but_never_answers(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.black_hole()
    with connect(proxy) as sock:  # the connect itself succeeds
        sock.sendall(b"anyone?")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    assert echo.received == 0


def test_black_hole_swallows_what_open_connections_send(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        proxy.black_hole()
        sock.sendall(b"lost")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)


def test_restore_after_a_black_hole_resets_held_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as held:
        wait_for(lambda: proxy.open_connections() == 1, "the proxy to accept", 5)
        proxy.black_hole()
        held.sendall(b"lost")
        proxy.restore()
        with pytest.raises(ConnectionResetError):
            held.recv(4096)
    with connect(proxy) as fresh:
        assert round_trip(fresh) == b"ping"


def test_reset_sends_rst_to_open_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            sock.recv(4096)


def test_reset_lets_new_connections_pass(proxy: FaultProxy) -> None:
    with connect(proxy) as old:
        assert round_trip(old) == b"ping"
        proxy.reset()
    assert proxy.mode == Mode.PASS
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"


def test_closed_connections_are_forgotten(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock) == b"ping"
        assert proxy.open_connections() == 1
    wait_for(lambda: proxy.open_connections() == 0, "the closed connection to be dropped", 5)


def test_a_target_that_is_down_looks_refused(echo: EchoServer) -> None:
    echo.close()
    with FaultProxy(echo.port) as proxy:
        try:
            with connect(proxy) as sock:
                sock.sendall(b"ping")
                answer = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    assert answer == b""  # reset, or EOF when the reset races the send
