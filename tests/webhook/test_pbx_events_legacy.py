"""The old X-Presence-Bridge-Signature scheme, accepted for one more release when its secret
is set (PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
import redis

from core import standard_webhooks
from core.standard_webhooks import new_secret
from core.state import intake
from emulator.harness.served import ServedApp
from tests.webhook.conftest import stream_items
from webhook.pbx_events import legacy_sign as sign

SECRET = b"pbx-events-secret-" + b"s" * 32


@pytest.fixture
def web(serve_contoso: Callable[..., ServedApp]) -> Iterator[httpx.Client]:
    served = serve_contoso(PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET=SECRET.decode())
    with httpx.Client(base_url=served.url) as client:
        yield client


def body(*events: dict[str, str], tenant: str = "contoso") -> bytes:
    return orjson.dumps({"tenant": tenant, "events": list(events)})


def call(kind: str = "call_started", user: str = "alice", call_id: str = "c1") -> dict[str, str]:
    return {"type": kind, "user": user, "call_id": call_id}


def post(
    web: httpx.Client,
    content: bytes,
    *,
    ts: int | None = None,
    secret: bytes = SECRET,
    signature: str | None = None,
) -> httpx.Response:
    stamp = str(int(time.time()) if ts is None else ts)
    headers = {
        "X-Presence-Bridge-Timestamp": stamp,
        "X-Presence-Bridge-Signature": signature or sign(secret, stamp, content),
    }
    return web.post("/pbx/events", content=content, headers=headers)


def test_signed_event_is_accepted_and_queued(web: httpx.Client, redis_client: redis.Redis) -> None:
    assert post(web, body(call())).status_code == 202
    [entry] = stream_items(redis_client)
    assert (entry["kind"], entry["item"]["type"], entry["item"]["user"]) == (
        "pbx",
        "call_started",
        "alice",
    )


def test_unsigned_request_is_refused(web: httpx.Client) -> None:
    assert web.post("/pbx/events", content=body(call())).status_code == 401


def test_wrong_secret_is_refused(web: httpx.Client) -> None:
    assert post(web, body(call()), secret=b"other").status_code == 401


def test_tampered_body_is_refused(web: httpx.Client) -> None:
    stamp = str(int(time.time()))
    signature = sign(SECRET, stamp, body(call()))
    response = post(web, body(call(user="mallory")), ts=int(stamp), signature=signature)
    assert response.status_code == 401


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_future_timestamp_is_refused(web: httpx.Client, offset: int) -> None:
    assert post(web, body(call()), ts=int(time.time()) + offset).status_code == 401


def test_replayed_request_is_refused(web: httpx.Client, redis_client: redis.Redis) -> None:
    content, stamp = body(call()), int(time.time())
    first = post(web, content, ts=stamp)
    second = post(web, content, ts=stamp)
    assert (first.status_code, second.status_code) == (202, 409)
    assert len(stream_items(redis_client)) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        orjson.dumps({"tenant": "other", "events": [call()]}),
        orjson.dumps({"tenant": "contoso", "events": []}),
        orjson.dumps(
            {"tenant": "contoso", "events": [{"type": "ringing", "user": "a", "call_id": "c"}]}
        ),
    ],
    ids=["malformed", "unknown-tenant", "no-events", "unknown-type"],
)
def test_bad_payload_is_a_400(web: httpx.Client, content: bytes) -> None:
    assert post(web, content).status_code == 400


def test_both_schemes_are_taken_while_senders_move(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    current = new_secret()
    served = serve_contoso(
        PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET=SECRET.decode(),
        PRESENCE_BRIDGE_PBX_EVENTS_SECRET=current,
    )
    with httpx.Client(base_url=served.url) as web:
        assert post(web, body(call())).status_code == 202
        content, stamp = body(call(call_id="c2")), int(time.time())
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_webhooks.sign(
                standard_webhooks.parse_secrets(current)[0], "msg_1", stamp, content
            ),
        }
        assert web.post("/pbx/events", content=content, headers=headers).status_code == 202
    assert [e["item"]["call_id"] for e in stream_items(redis_client)] == ["c1", "c2"]
    assert intake.counters(redis_client)["pbx_events_legacy"] == 1
