"""A faithful Asterisk Manager Interface server for tests, on a free loopback port.

The TCP side (banner, request lines, sessions, a thread of its own) and a control API for
tests: replay recorded events, cut clients off, take the server away and bring it back,
look at AstDB and at the actions received. What Asterisk does with each action lives in
tests/ami_asterisk.py; the recorded system in tests/ami_recorded.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from emulator.ami.asterisk import Asterisk, ReceivedAction, Session
from emulator.ami.recorded import RECORDED_HINTS, RECORDED_USER
from emulator.ami.rules import Headers, ManagerUser, reply

AMI_VERSION = "9.0.0"  # what Asterisk 20 announces
MAX_LINE = 1024  # Asterisk reads at most 1024 bytes per request line
T = TypeVar("T")


class AmiServer:
    """One AMI server on a loopback port, run in a thread; use it as a context manager."""

    def __init__(
        self,
        users: Mapping[str, ManagerUser] | None = None,
        *,
        hints: Mapping[tuple[str, str], str] | None = None,
        functions: Iterable[str] = ("PRESENCE_STATE", "DEVICE_STATE"),
        auth_failure_delay: float = 1.0,  # Asterisk sleeps 1 s before "Authentication failed"
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._defaults = (
            dict(users if users is not None else {"check": RECORDED_USER}),
            dict(hints if hints is not None else RECORDED_HINTS),
            tuple(functions),
            auth_failure_delay,
        )
        self.asterisk = self._fresh()
        self._ssl = ssl_context
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _fresh(self) -> Asterisk:
        users, hints, functions, delay = self._defaults
        return Asterisk(users, hints, functions, delay)

    # Tests change these between connections; reset() puts them back.
    @property
    def users(self) -> dict[str, ManagerUser]:
        return self.asterisk.users

    @property
    def functions(self) -> set[str]:
        """The dialplan functions Asterisk has loaded; Setvar of any other is refused."""
        return self.asterisk.functions

    @property
    def auth_failure_delay(self) -> float:
        return self.asterisk.auth_failure_delay

    @auth_failure_delay.setter
    def auth_failure_delay(self, seconds: float) -> None:
        self.asterisk.auth_failure_delay = seconds

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> AmiServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(_quiet_tls_refusals)
            self._loop = loop
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._go_down())
            loop.close()

        self._thread = threading.Thread(target=run, name="ami-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("AMI server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._session, self.host, self.port, ssl=self._ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run on the server's loop, where every piece of state lives."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop).result(10)

    def _read(self, fn: Callable[[], T]) -> T:
        async def go() -> T:
            return fn()

        return self._call(go)

    # --- control API (any thread) --------------------------------------------------------

    def reset(self) -> None:
        """Forget state and settings, drop clients; the listening port stays."""

        async def go() -> None:
            self._drop()
            self.asterisk = self._fresh()
            if self._server is None:
                await self._listen()

        self._call(go)

    def publish(self, *events: Mapping[str, str]) -> None:
        """Raise events as Asterisk would: the channel table follows, sessions get them."""

        async def go() -> None:
            for event in events:
                self.asterisk.publish(event)
            for session in list(self.asterisk.sessions):
                with contextlib.suppress(ConnectionError, OSError):
                    await session.writer.drain()

        self._call(go)

    def replay(self, events: Iterable[Mapping[str, str]]) -> None:
        self.publish(*list(events))

    def drop_connections(self) -> None:
        """Cut every client off at once, as a crash or a network failure does."""
        self._read(self._drop)

    def go_down(self) -> None:
        """Stop listening and cut clients off (Asterisk stopped); state survives."""
        self._call(self._go_down)

    def come_back(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen)

    def db(self) -> dict[tuple[str, str], str]:
        return self._read(lambda: dict(self.asterisk.state.db))

    def db_put(self, family: str, key: str, value: str) -> None:
        self._read(lambda: self.asterisk.state.db.__setitem__((family, key), value))

    def channels(self) -> list[dict[str, str]]:
        return self._read(lambda: [dict(c.fields) for c in self.asterisk.state.channels.values()])

    def actions(self) -> list[ReceivedAction]:
        """Every action received, secrets left out."""
        return self._read(lambda: list(self.asterisk.state.actions))

    def sessions(self) -> int:
        """Logged-in sessions right now."""
        return self._read(lambda: sum(1 for s in self.asterisk.sessions if s.authenticated))

    def logins(self) -> int:
        return self._read(lambda: self.asterisk.state.logins)

    # --- sessions ------------------------------------------------------------------------

    def _drop(self) -> None:
        for session in list(self.asterisk.sessions):
            session.writer.transport.abort()
        self.asterisk.sessions.clear()

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._drop()
            await self._server.wait_closed()
            self._server = None
        self._drop()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client: lines until a blank one make a request, as Asterisk reads them."""
        asterisk = self.asterisk
        session = Session(writer)
        asterisk.sessions.add(session)
        session.send(f"Asterisk Call Manager/{AMI_VERSION}\r\n".encode())
        message: Headers = []
        too_long = False
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")  # CRLF, or a bare LF
                except asyncio.LimitOverrunError:
                    await reader.read(MAX_LINE * 64)
                    too_long = True
                    continue
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
                if len(line) > MAX_LINE:
                    too_long = True
                    continue
                if line:
                    key, _, value = line.partition(":")
                    message.append((key, value.lstrip(" \t")))
                    continue
                if too_long:
                    session.send(reply(message, "Error", "Failed to parse message: line too long"))
                    message, too_long = [], False
                    continue
                if not message:
                    continue
                keep = await asterisk.process(session, message)
                message = []
                await writer.drain()
                if not keep:
                    return
        finally:
            asterisk.sessions.discard(session)
            writer.close()


def _quiet_tls_refusals(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A client that refuses our certificate is a test passing, not a server error."""
    if not isinstance(context.get("exception"), ssl.SSLError):
        loop.default_exception_handler(context)


async def _wrap(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
