"""Fixtures for anything that talks AMI: one AMI server per module, reset for every test."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from emulator.ami.server import AmiServer
from workers.pbx.ami_wire import AmiMessage, MessageReader, encode

USERNAME, SECRET = "check", "checksecret"  # noqa: S105 - the recorded system's AMI user


@pytest.fixture(scope="module")
def ami_running() -> Iterator[AmiServer]:
    with AmiServer() as server:
        yield server


@pytest.fixture
def ami_server(ami_running: AmiServer) -> AmiServer:
    ami_running.reset()
    return ami_running


def endpoint_options(server: AmiServer, **extra: object) -> dict[str, object]:
    return {"host": server.host, "port": server.port, "username": USERNAME, **extra}


class RawSession:
    """A bare TCP session to send exact bytes and read exact answers."""

    def __init__(self, server: AmiServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.reader = MessageReader()
        self._ready: list[AmiMessage] = []
        while self.reader.banner is None:
            self._ready += self.reader.feed(self.sock.recv(4096))

    def send(self, *pairs: tuple[str, str]) -> None:
        self.sock.sendall(encode(pairs))

    def read(self, timeout: float = 5.0) -> AmiMessage:
        deadline = time.monotonic() + timeout
        while not self._ready:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("AMI server closed the connection")
            self._ready += self.reader.feed(data)
        return self._ready.pop(0)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
