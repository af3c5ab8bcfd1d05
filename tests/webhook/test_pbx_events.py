"""POST /pbx/events signed per Standard Webhooks, by the reference library (`standardwebhooks`
from PyPI), not by our own code: what any sender's library makes, the route takes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import redis
from standardwebhooks import Webhook

from core.standard_webhooks import new_secret
from core.state import intake
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env
from tests.webhook.conftest import stream_items

CURRENT, PREVIOUS = new_secret(), new_secret()


@pytest.fixture
def web(serve_contoso: Callable[..., ServedApp]) -> Iterator[httpx.Client]:
    served = serve_contoso(PRESENCE_BRIDGE_PBX_EVENTS_SECRET=f"{CURRENT},{PREVIOUS}")
    with httpx.Client(base_url=served.url) as client:
        yield client


def body(*events: dict[str, str], tenant: str = "contoso") -> bytes:
    return orjson.dumps({"tenant": tenant, "events": list(events)})


def call(kind: str = "call_started", user: str = "alice", call_id: str = "c1") -> dict[str, str]:
    return {"type": kind, "user": user, "call_id": call_id}


def signed(
    content: bytes,
    *,
    secrets: tuple[str, ...] = (CURRENT,),
    msg_id: str | None = None,
    ts: int | None = None,
) -> dict[str, str]:
    """The three headers, as the reference library signs them (one entry per secret)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time()) if ts is None else ts
    when = datetime.fromtimestamp(stamp, UTC)
    signatures = [Webhook(s).sign(msg_id, when, content.decode()) for s in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": " ".join(signatures),
    }


def post(web: httpx.Client, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return web.post("/pbx/events", content=content, headers=headers)


def test_signed_event_is_accepted_and_queued(web: httpx.Client, redis_client: redis.Redis) -> None:
    content = body(call())
    assert post(web, content, signed(content)).status_code == 202
    [entry] = stream_items(redis_client)
    assert (entry["tenant"], entry["kind"], entry["item"]) == ("contoso", "pbx", call())


def test_the_previous_secret_still_verifies_and_is_counted(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    content = body(call())
    assert post(web, content, signed(content, secrets=(PREVIOUS,))).status_code == 202
    assert len(stream_items(redis_client)) == 1
    assert intake.counters(redis_client).get("pbx_events_previous_secret") == 1


def test_a_header_listing_several_signatures_is_accepted_if_one_matches(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    content = body(call())
    headers = signed(content, secrets=(new_secret(), CURRENT, new_secret()))
    assert post(web, content, headers).status_code == 202
    assert len(stream_items(redis_client)) == 1
    assert intake.counters(redis_client).get("pbx_events_previous_secret", 0) == 0


def test_wrong_secret_is_refused(web: httpx.Client, redis_client: redis.Redis) -> None:
    content = body(call())
    response = post(web, content, signed(content, secrets=(new_secret(),)))
    assert response.status_code == 401
    assert "no signature matches" in response.json()["error"]
    assert stream_items(redis_client) == []


def test_tampered_body_is_refused(web: httpx.Client, redis_client: redis.Redis) -> None:
    headers = signed(body(call()))
    assert post(web, body(call(user="mallory")), headers).status_code == 401
    assert stream_items(redis_client) == []


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_future_timestamp_is_refused(web: httpx.Client, offset: int) -> None:
    content = body(call())
    response = post(web, content, signed(content, ts=int(time.time()) + offset))
    assert response.status_code == 401
    assert "webhook-timestamp" in response.json()["error"]


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_by_name(web: httpx.Client, missing: str) -> None:
    content = body(call())
    headers = {k: v for k, v in signed(content).items() if k != missing}
    response = post(web, content, headers)
    assert (response.status_code, response.json()) == (
        401,
        {"error": f"missing header(s): {missing}"},
    )


def test_unsigned_request_is_refused(web: httpx.Client) -> None:
    assert web.post("/pbx/events", content=body(call())).status_code == 401


def test_the_old_signature_alone_is_refused_with_a_hint(web: httpx.Client) -> None:
    response = web.post(
        "/pbx/events",
        content=body(call()),
        headers={"X-Presence-Bridge-Timestamp": "1", "X-Presence-Bridge-Signature": "v1=00"},
    )
    assert response.status_code == 401
    assert "X-Presence-Bridge-Signature is no longer accepted" in response.json()["error"]


def test_a_replayed_message_is_taken_in_once(web: httpx.Client, redis_client: redis.Redis) -> None:
    """The same webhook-id and body again (a replay, or a sender's retry): 200, queued once."""
    content = body(call())
    headers = signed(content)
    first, second = post(web, content, headers), post(web, content, headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"duplicate": True}
    assert len(stream_items(redis_client)) == 1


def test_a_retry_signed_again_with_the_same_id_is_taken_in_once(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    content = body(call())
    assert post(web, content, signed(content, msg_id="msg_retry")).status_code == 202
    later = signed(content, msg_id="msg_retry", ts=int(time.time()) + 5)
    assert post(web, content, later).status_code == 200
    assert len(stream_items(redis_client)) == 1


def test_an_id_reused_for_another_body_is_a_conflict(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    started, ended = body(call()), body(call("call_ended"))
    assert post(web, started, signed(started, msg_id="msg_same")).status_code == 202
    response = post(web, ended, signed(ended, msg_id="msg_same"))
    assert response.status_code == 409
    assert "give each message its own id" in response.json()["error"]
    assert len(stream_items(redis_client)) == 1


def test_the_same_id_from_two_tenants_is_two_messages(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    served = serve_contoso(
        extra='\n[[tenants]]\nname = "fabrikam"\ntenant_id = "22222222-2222-3333-4444-555555555555"'
        '\nclient_id = "c"\npublic_base_url = "https://bridge.example.com"\n',
        PRESENCE_BRIDGE_PBX_EVENTS_SECRET=CURRENT,
        **{secret_env("fabrikam", "CLIENT_SECRET"): "s"},
    )
    with httpx.Client(base_url=served.url) as web:
        for tenant in ("contoso", "fabrikam"):
            content = body(call(), tenant=tenant)
            assert post(web, content, signed(content, msg_id="msg_1")).status_code == 202
    assert [e["tenant"] for e in stream_items(redis_client)] == ["contoso", "fabrikam"]


def test_headers_repeated_as_asterisk_curl_sends_them_are_refused(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    """CURL() on an Asterisk channel sends the first request's headers again, then the new."""
    started, ended = body(call()), body(call("call_ended"))
    first = signed(started)
    assert post(web, started, first).status_code == 202
    second = signed(ended)
    repeated = [*first.items(), *second.items()]
    response = web.post("/pbx/events", content=ended, headers=repeated)
    assert response.status_code == 401
    assert "sent more than once" in response.json()["error"]
    assert len(stream_items(redis_client)) == 1


def test_a_route_without_secrets_refuses_everything(
    serve_contoso: Callable[..., ServedApp],
) -> None:
    served = serve_contoso()
    content = body(call())
    with httpx.Client(base_url=served.url) as web:
        response = post(web, content, signed(content))
    assert response.status_code == 401


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
    assert post(web, content, signed(content)).status_code == 400


def test_an_answer_never_carries_a_secret(web: httpx.Client) -> None:
    content = body(call())
    answers = [
        post(web, content, signed(content, secrets=(new_secret(),))).text,
        post(web, content, signed(content, ts=1)).text,
        post(web, b"{", signed(b"{")).text,
    ]
    for secret in (CURRENT, PREVIOUS):
        assert not any(secret.removeprefix("whsec_")[:12] in answer for answer in answers)
