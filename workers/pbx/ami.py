"""Asterisk Manager Interface clients: a blocking one for adapter writes, an asyncio one for
listeners. Both log in, correlate each action with its answer by ActionID (list actions end
with an `EventList: Complete` event) and turn `Response: Error` into AmiRefused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import socket
import ssl
import time
from collections.abc import Mapping

from core.asterisk_options import DEFAULT_PORT, AmiEndpoint
from core.errors import BridgeError, TransientError
from workers.pbx.ami_wire import (
    ActionResult,
    AmiMessage,
    AmiProtocolError,
    MessageReader,
    encode_action,
)

__all__ = [  # the endpoint is typed in core, where the settings validate it
    "DEFAULT_PORT",
    "MAX_QUEUED_EVENTS",
    "AmiClient",
    "AmiConnectionError",
    "AmiEndpoint",
    "AmiLoginFailed",
    "AmiRefused",
    "AsyncAmiClient",
]
MAX_QUEUED_EVENTS = 10_000
_READ_CHUNK = 65536


class AmiConnectionError(TransientError):
    """Asterisk could not be reached, or the connection broke or stalled."""


class AmiRefused(BridgeError):
    """Asterisk answered `Response: Error`; `reason` is its `Message:` verbatim (permanent)."""

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"AMI {action} refused: {reason}")


class AmiLoginFailed(AmiRefused):
    """Login refused ("Authentication failed", "Login Already In Use"); Asterisk then hangs up."""


def _action_ids() -> itertools.count[int]:
    return itertools.count(1)


def _login_headers(username: str, secret: str, events: str) -> dict[str, str]:
    return {"Username": username, "Secret": secret, "Events": events}


def _checked(result: ActionResult, check: bool) -> ActionResult:
    if check and not result.ok:
        if result.action.lower() == "login":
            raise AmiLoginFailed(result.action, result.message)
        raise AmiRefused(result.action, result.message)
    return result


class AmiClient:
    """A blocking AMI session. Not thread-safe: one caller at a time, as adapters are used."""

    def __init__(self, endpoint: AmiEndpoint, secret: str, *, events: str = "off") -> None:
        self.endpoint = endpoint
        self._secret = secret
        self._events = events  # "off": adapter sessions want answers only
        self._sock: socket.socket | None = None
        self._reader = MessageReader()
        self._ids = _action_ids()
        self._prefix = secrets.token_hex(4)
        self._seq = 0
        self.banner: str | None = None

    def __repr__(self) -> str:
        e = self.endpoint
        return f"AmiClient({e.username}@{e.host}:{e.port}, tls={e.tls})"

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection, read the banner and log in."""
        self.close()
        e = self.endpoint
        try:
            sock = socket.create_connection((e.host, e.port), timeout=e.connect_timeout)
            context = e.ssl_context()
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=e.server_name)
        except (OSError, ssl.SSLError) as exc:
            raise AmiConnectionError(f"AMI {e.host}:{e.port} unreachable: {exc}") from exc
        self._sock = sock
        self._reader = MessageReader()
        deadline = time.monotonic() + e.connect_timeout
        while self._reader.banner is None:
            self._receive(deadline)
        self.banner = self._reader.banner
        try:
            self.action("Login", _login_headers(e.username, self._secret, self._events))
        except AmiRefused:
            self._fail()  # Asterisk hangs up after a refused Login anyway
            raise

    def action(
        self, name: str, headers: Mapping[str, str] | None = None, *, check: bool = True
    ) -> ActionResult:
        if self._sock is None:
            raise AmiConnectionError("AMI client is not connected")
        action_id = f"{self._prefix}-{next(self._ids)}"
        result = ActionResult(name, action_id)
        deadline = time.monotonic() + self.endpoint.timeout
        try:
            self._sock.settimeout(self.endpoint.timeout)
            self._sock.sendall(encode_action(name, action_id, headers))
        except OSError as exc:
            self._fail()
            raise AmiConnectionError(f"AMI {name}: send failed: {exc}") from exc
        while not result.done:
            for message in self._receive(deadline):
                if message.action_id == action_id:
                    result.add(message, self._seq)
        return _checked(result, check)

    def _receive(self, deadline: float) -> list[AmiMessage]:
        assert self._sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._fail()
            raise AmiConnectionError("AMI answer timed out")
        try:
            self._sock.settimeout(remaining)
            data = self._sock.recv(_READ_CHUNK)
        except OSError as exc:  # socket.timeout is an OSError
            self._fail()
            raise AmiConnectionError(f"AMI receive failed: {exc}") from exc
        if not data:
            self._fail()
            raise AmiConnectionError("AMI connection closed by Asterisk")
        try:
            messages = self._reader.feed(data)
        except AmiProtocolError as exc:
            self._fail()
            raise AmiConnectionError(str(exc)) from exc
        self._seq += len(messages)
        return messages

    def _fail(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Log off politely when the session is still up, then close."""
        if self._sock is None:
            return
        with contextlib.suppress(AmiConnectionError, AmiRefused):
            self.action("Logoff", check=False)
        self._fail()


class AsyncAmiClient:
    """An asyncio AMI session: actions may overlap; unsolicited events queue up in order."""

    def __init__(
        self,
        endpoint: AmiEndpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: MessageReader,
    ) -> None:
        self.endpoint = endpoint
        self.banner = parser.banner
        self._stream = reader
        self._writer = writer
        self._parser = parser
        self._ids = _action_ids()
        self._prefix = secrets.token_hex(4)
        self._pending: dict[str, tuple[ActionResult, asyncio.Future[ActionResult]]] = {}
        self._events: asyncio.Queue[tuple[int, AmiMessage] | None] = asyncio.Queue()
        self._seq = 0
        self._closed: str | None = None  # why, once closed
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def __repr__(self) -> str:
        e = self.endpoint
        return f"AsyncAmiClient({e.username}@{e.host}:{e.port}, tls={e.tls})"

    @classmethod
    async def connect(
        cls, endpoint: AmiEndpoint, secret: str, *, events: str = "on"
    ) -> AsyncAmiClient:
        """Connect, read the banner and log in; `events` is the Login's event mask."""
        e = endpoint
        parser = MessageReader()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    e.host,
                    e.port,
                    ssl=e.ssl_context(),
                    server_hostname=e.server_name if e.tls else None,
                ),
                e.connect_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise AmiConnectionError(f"AMI {e.host}:{e.port} unreachable: {exc}") from exc
        try:
            async with asyncio.timeout(e.connect_timeout):
                while parser.banner is None:
                    data = await reader.read(_READ_CHUNK)
                    if not data:
                        raise AmiConnectionError("AMI connection closed before the banner")
                    parser.feed(data)  # Asterisk sends nothing else before Login
        except (OSError, TimeoutError, AmiProtocolError) as exc:
            writer.close()
            raise AmiConnectionError(f"AMI banner not received: {exc}") from exc
        client = cls(endpoint, reader, writer, parser)
        try:
            await client.action("Login", _login_headers(e.username, secret, events))
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def events_waiting(self) -> int:
        """Events received and not read yet (a burst still coming in)."""
        return self._events.qsize()

    async def action(
        self,
        name: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        check: bool = True,
    ) -> ActionResult:
        if self._closed is not None:
            raise AmiConnectionError(f"AMI connection closed: {self._closed}")
        action_id = f"{self._prefix}-{next(self._ids)}"
        result = ActionResult(name, action_id)
        future: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = (result, future)
        try:
            self._writer.write(encode_action(name, action_id, headers))
            async with asyncio.timeout(timeout or self.endpoint.timeout):
                await self._writer.drain()
                await future
        except TimeoutError as exc:
            # A stalled answer means a stalled connection: make the caller reconnect.
            self._shutdown(f"{name} timed out")
            raise AmiConnectionError(f"AMI {name} timed out") from exc
        except OSError as exc:
            self._shutdown(str(exc))
            raise AmiConnectionError(f"AMI {name}: {exc}") from exc
        finally:
            self._pending.pop(action_id, None)
        return _checked(result, check)

    async def next_event(self, timeout: float | None = None) -> tuple[int, AmiMessage] | None:
        """The next unsolicited message and its sequence number; None when `timeout` passes.

        Raises AmiConnectionError once the connection is gone and every queued event was read.
        """
        try:
            async with asyncio.timeout(timeout):
                item = await self._events.get()
        except TimeoutError:
            return None
        if item is None:
            self._events.put_nowait(None)  # stay closed for later callers
            raise AmiConnectionError(f"AMI connection closed: {self._closed}")
        return item

    async def _read_loop(self) -> None:
        reason = "closed by Asterisk"
        try:
            while True:
                data = await self._stream.read(_READ_CHUNK)
                if not data:
                    break
                for message in self._parser.feed(data):
                    self._route(message)
                if self._closed is not None:
                    return
        except (OSError, AmiProtocolError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "closed"
        self._shutdown(reason)

    def _route(self, message: AmiMessage) -> None:
        self._seq += 1
        pending = self._pending.get(message.action_id or "")
        if pending is not None:
            result, future = pending
            result.add(message, self._seq)
            if result.done and not future.done():
                future.set_result(result)
            return
        if self._events.qsize() >= MAX_QUEUED_EVENTS:
            self._shutdown("event consumer too slow")  # a reconnect resyncs from a snapshot
            return
        self._events.put_nowait((self._seq, message))

    def _shutdown(self, reason: str) -> None:
        if self._closed is not None:
            return
        self._closed = reason
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(AmiConnectionError(f"AMI connection closed: {reason}"))
        self._events.put_nowait(None)
        self._writer.close()

    async def close(self) -> None:
        if self._closed is None:
            with contextlib.suppress(AmiConnectionError, AmiRefused):
                await self.action("Logoff", timeout=1.0, check=False)
        self._shutdown("closed")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
