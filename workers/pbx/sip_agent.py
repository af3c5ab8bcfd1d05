"""An asyncio SIP user agent on one UDP socket: non-INVITE client transactions in parallel,
and every request that arrives (a NOTIFY) answered by a handler.

A subscriber must use one socket for both: the notifier sends its NOTIFYs to the Contact
the SUBSCRIBE named, and NAT-minded PBXs to where the SUBSCRIBE came from.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import cast

from workers.pbx.sip_wire import (
    T2,
    SipRequest,
    SipResponse,
    branch_of,
    build_request,
    build_response,
    parse_message,
)

log = logging.getLogger("workers.pbx.sip_agent")

# Answers a request with (status, reason); runs on the event loop, so it must not block.
RequestHandler = Callable[[SipRequest], tuple[int, str]]


class SipAgent(asyncio.DatagramProtocol):
    """Open with `await SipAgent.open(...)`; `close()` when done."""

    def __init__(self, on_request: RequestHandler, *, t1: float, timeout: float) -> None:
        self._on_request = on_request
        self._t1, self._timeout = t1, timeout
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[str, asyncio.Future[SipResponse]] = {}
        self._proceeding: set[str] = set()  # branches that had a provisional answer
        self.port = 0

    @classmethod
    async def open(
        cls,
        bind_host: str,
        bind_port: int,
        on_request: RequestHandler,
        *,
        t1: float,
        timeout: float,
    ) -> SipAgent:
        loop = asyncio.get_running_loop()
        _, agent = await loop.create_datagram_endpoint(
            lambda: cls(on_request, t1=t1, timeout=timeout), local_addr=(bind_host, bind_port)
        )
        return agent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.port = int(self._transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionAbortedError("agent closed"))

    async def request(
        self,
        destination: tuple[str, int],
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        *,
        sent_by: str,
        payload: bytes = b"",
    ) -> SipResponse:
        """The final response; TimeoutError when none came within the timeout (timer F)."""
        if self._transport is None:
            raise ConnectionAbortedError("agent closed")
        branch = "z9hG4bK" + uuid.uuid4().hex
        data = build_request(
            method, uri, f"SIP/2.0/UDP {sent_by};branch={branch};rport", headers, payload
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SipResponse] = loop.create_future()
        self._pending[branch] = future
        deadline = loop.time() + self._timeout
        interval = self._t1
        try:
            while True:
                if self._transport is None:
                    raise ConnectionAbortedError("agent closed")
                self._transport.sendto(data, destination)
                wait = min(interval, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({future}, timeout=wait)
                if done:
                    return future.result()
                # RFC 3261 17.1.2.2 timer E: double up to T2; T2 once the server is proceeding.
                interval = T2 if branch in self._proceeding else min(interval * 2, T2)
        finally:
            self._pending.pop(branch, None)
            self._proceeding.discard(branch)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse):
            branch = branch_of(message)
            future = self._pending.get(branch or "")
            if future is None or future.done():
                return  # a late or repeated answer
            if message.status >= 200:
                future.set_result(message)
            else:
                self._proceeding.add(branch or "")
            return
        if message is None or message.method == "ACK":
            return  # keep-alives, garbage; ACKs answer nothing
        try:
            status, reason = self._on_request(message)
        except Exception:  # a handler bug must not leave the server retransmitting forever
            log.exception("sip request handler failed", extra={"method": message.method})
            status, reason = 500, "Server Internal Error"
        if self._transport is not None:
            self._transport.sendto(build_response(message, status, reason), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("sip socket error", extra={"error": str(exc)})
