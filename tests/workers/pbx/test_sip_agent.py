"""The asyncio SIP agent on loopback: retransmissions, provisional answers, requests answered."""

from __future__ import annotations

import asyncio
import socket

import pytest

from workers.pbx.sip_agent import SipAgent
from workers.pbx.sip_wire import SipRequest, SipResponse, branch_of, parse_message

HEADERS = [
    ("Call-ID", "c1"),
    ("CSeq", "1 OPTIONS"),
    ("From", "<sip:a@x>;tag=1"),
    ("To", "<sip:b@x>"),
]


def peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 5)
    return data, addr


def answer_to(data: bytes, status: str) -> bytes:
    request = parse_message(data)
    assert isinstance(request, SipRequest)
    via = request.header("via")
    return (f"SIP/2.0 {status}\r\nVia: {via}\r\nCSeq: 1 OPTIONS\r\n\r\n").encode()


def test_a_silent_peer_gets_retransmissions_then_a_timeout() -> None:
    async def scenario() -> int:
        agent = await SipAgent.open("127.0.0.1", 0, lambda r: (200, "OK"), t1=0.01, timeout=2)
        silent = peer()
        try:
            with pytest.raises(TimeoutError):
                await agent.request(
                    silent.getsockname(),
                    "OPTIONS",
                    "sip:b@x",
                    HEADERS,
                    sent_by=f"127.0.0.1:{agent.port}",
                )
            copies = 0
            while True:
                try:
                    silent.recvfrom(65535)
                except BlockingIOError:
                    return copies
                copies += 1
        finally:
            agent.close()
            silent.close()

    assert asyncio.run(scenario()) >= 3  # the first send and at least two of timer E


def test_a_provisional_answer_is_followed_by_the_final_one() -> None:
    async def scenario() -> SipResponse:
        agent = await SipAgent.open("127.0.0.1", 0, lambda r: (200, "OK"), t1=0.5, timeout=5)
        server = peer()
        try:
            pending = asyncio.ensure_future(
                agent.request(
                    server.getsockname(),
                    "OPTIONS",
                    "sip:b@x",
                    HEADERS,
                    sent_by=f"127.0.0.1:{agent.port}",
                )
            )
            data, addr = await receive(server)
            server.sendto(answer_to(data, "100 Trying"), addr)
            server.sendto(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=other\r\n\r\n", addr)
            server.sendto(answer_to(data, "202 Accepted"), addr)
            return await pending
        finally:
            agent.close()
            server.close()

    response = asyncio.run(scenario())
    assert response.status == 202


@pytest.mark.parametrize(
    ("handler_result", "status"),
    [((200, "OK"), "200 OK"), ((481, "Subscription Does Not Exist"), "481"), (None, "500")],
)
def test_requests_are_answered_by_the_handler_and_a_failing_one_is_a_500(
    handler_result: tuple[int, str] | None, status: str
) -> None:
    def handler(request: SipRequest) -> tuple[int, str]:
        if handler_result is None:
            raise RuntimeError("bug")
        return handler_result

    async def scenario() -> SipResponse:
        agent = await SipAgent.open("127.0.0.1", 0, handler, t1=0.5, timeout=5)
        client = peer()
        try:
            request = (
                b"NOTIFY sip:a@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKn1\r\n"
                b"From: <sip:b@x>;tag=2\r\nTo: <sip:a@x>;tag=1\r\n"
                b"Call-ID: c9\r\nCSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n"
            )
            client.sendto(request, ("127.0.0.1", agent.port))
            data, _ = await receive(client)
            answer = parse_message(data)
            assert isinstance(answer, SipResponse)
            return answer
        finally:
            agent.close()
            client.close()

    answer = asyncio.run(scenario())
    assert f"{answer.status} {answer.reason}".startswith(status)
    assert answer.header("cseq") == "3 NOTIFY" and branch_of(answer) == "z9hG4bKn1"
