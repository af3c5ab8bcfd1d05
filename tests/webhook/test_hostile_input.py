"""Bad input at the web routes gets a 4xx, never a 5xx: the real app over loopback, fed what a
mutation fuzzer found and what hypothesis makes (bounded, derandomized: tests/conftest.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from core import standard_webhooks
from core.standard_webhooks import new_secret
from core.state import subscriptions as sub_state
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env
from tests.webhook.conftest import presence_item, stream_items
from webhook.pbx_events import legacy_sign

SECRET = new_secret()
LEGACY = "pbx-events-legacy-" + "s" * 32
SID, CLIENT_STATE = str(uuid.uuid4()), uuid.uuid4().hex * 2
GRAPH_KEYS = (
    "subscriptionId",
    "clientState",
    "changeType",
    "resource",
    "resourceData",
    "subscriptionExpirationDateTime",
    "lifecycleEvent",
    "encryptedContent",
    "id",
    "tenantId",
)


@dataclass
class Bridge:
    web: httpx.Client
    redis: redis.Redis


@pytest.fixture
def bridge(serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis) -> Iterator[Bridge]:
    served = serve_contoso(
        PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET=LEGACY,
        **{secret_env("contoso", "PBX_EVENTS_SECRET"): SECRET},
    )
    sub_state.register(redis_client, SID, "contoso", CLIENT_STATE)
    with httpx.Client(base_url=served.url) as web:
        yield Bridge(web, redis_client)


def pbx_post(web: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    [key] = standard_webhooks.parse_secrets(SECRET)
    signed = {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard_webhooks.sign(key, msg_id, stamp, content),
    }
    return web.post("/pbx/events", content=content, headers=signed | headers)


def legacy_post(web: httpx.Client, content: bytes, stamp: bytes) -> httpx.Response:
    signature = legacy_sign(LEGACY.encode(), stamp.decode("latin-1"), content)
    headers = [
        (b"x-presence-bridge-timestamp", stamp),
        (b"x-presence-bridge-signature", signature.encode()),
    ]
    return web.post("/pbx/events", content=content, headers=headers)


# ---- what the fuzzer found ----------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["²" * 10, "1" * 5000], ids=["unicode-digits", "5000-digits"])
def test_a_legacy_timestamp_that_is_not_unix_seconds_is_a_401(bridge: Bridge, stamp: str) -> None:
    content = json.dumps({"tenant": "contoso", "events": []}).encode()
    response = legacy_post(bridge.web, content, stamp.encode("latin-1"))
    assert response.status_code == 401
    assert response.json() == {"error": "timestamp must be integer Unix seconds"}


@pytest.mark.parametrize("tenant", [["contoso"], {"name": "contoso"}], ids=["list", "object"])
def test_a_tenant_that_is_not_a_string_is_a_400(bridge: Bridge, tenant: object) -> None:
    event = {"type": "call_started", "user": "alice", "call_id": "c1"}
    content = json.dumps({"tenant": tenant, "events": [event]}).encode()
    response = pbx_post(bridge.web, content)
    assert response.status_code == 400
    assert "'tenant' must name a configured tenant" in response.json()["error"]


@pytest.mark.parametrize("kind", [["call_started"], {"a": 1}], ids=["list", "object"])
def test_an_event_type_that_is_not_a_string_is_a_400(bridge: Bridge, kind: object) -> None:
    content = json.dumps({"tenant": "contoso", "events": [{"type": kind}]}).encode()
    response = pbx_post(bridge.web, content)
    assert response.status_code == 400
    assert "each event needs 'type'" in response.json()["error"]


@pytest.mark.parametrize("resource", [5, None, ["x"], {"a": 1}], ids=repr)
def test_a_notification_whose_resource_is_not_a_string_is_taken(
    bridge: Bridge, resource: object
) -> None:
    item = presence_item(SID, CLIENT_STATE, resource=resource)
    assert bridge.web.post("/graph/notifications", json={"value": [item]}).status_code == 202
    [entry] = stream_items(bridge.redis)
    assert entry["item"]["userId"] == item["resourceData"]["id"]


def test_an_expiry_out_of_the_date_range_is_kept_as_sent(bridge: Bridge) -> None:
    late = "9999-12-31T23:59:59-01:00"
    item = presence_item(SID, CLIENT_STATE, subscriptionExpirationDateTime=late)
    assert bridge.web.post("/graph/notifications", json={"value": [item]}).status_code == 202
    assert stream_items(bridge.redis)[0]["item"]["subscriptionExpirationDateTime"] == late


def test_an_item_nested_deeper_than_the_stream_takes_is_a_400(bridge: Bridge) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    item = presence_item(SID, CLIENT_STATE, extra=deep)
    response = bridge.web.post("/graph/notifications", json={"value": [item]})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "an item is nested too deeply"},
    )
    assert stream_items(bridge.redis) == []


# ---- any input: never a 5xx ---------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: the body is written by the stdlib's json
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
resource_data = st.fixed_dictionaries(
    {}, optional={"id": st.text(max_size=10), "@odata.type": json_values, "@odata.id": json_values}
)
fields = {key: json_values for key in GRAPH_KEYS[2:]} | {
    "resource": st.sampled_from(
        ["communications/presences/abc", "communications/presences?$filter=id in ('a')"]
    )
    | scalars
    | json_values,
    "resourceData": resource_data | json_values,
    "subscriptionExpirationDateTime": st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([+-][0-9]{2}:[0-9]{2}|Z)?\Z"
    )
    | json_values,
}
# Items of the real subscription (so the route's later checks, normalisation and dedup, see
# hostile values too), and items with Graph's keys and anything in them.
graph_items = st.fixed_dictionaries(
    {"subscriptionId": st.just(SID), "clientState": st.just(CLIENT_STATE)}, optional=fields
) | st.fixed_dictionaries(
    {}, optional={"subscriptionId": json_values, "clientState": json_values} | fields
)
collections = st.fixed_dictionaries(
    {"value": st.lists(graph_items | json_values, max_size=4)},
    optional={"validationTokens": json_values | st.lists(st.text(max_size=20), max_size=3)},
)
bodies = st.one_of(
    collections.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.mark.parametrize("path", ["/graph/notifications", "/graph/lifecycle"])
@given(content=bodies)
def test_any_graph_body_gets_202_or_400(bridge: Bridge, path: str, content: bytes) -> None:
    response = bridge.web.post(path, content=content)
    assert response.status_code in (202, 400), response.text


@given(token=st.text(max_size=300))
def test_any_validation_token_gets_200_or_400(bridge: Bridge, token: str) -> None:
    response = bridge.web.post("/graph/notifications", params={"validationToken": token})
    assert response.status_code in (200, 400)


pbx_events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["call_started", "call_ended"]) | scalars | json_values,
        "user": st.text(max_size=300) | json_values,
        "call_id": st.text(max_size=300) | json_values,
    },
)
pbx_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "tenant": st.sampled_from(["contoso", "fabrikam"]) | json_values,
            "events": st.lists(pbx_events | json_values, max_size=3) | json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@given(content=pbx_bodies)
def test_any_signed_pbx_body_gets_a_2xx_400_or_401_and_is_only_its_tenants(
    bridge: Bridge, content: bytes
) -> None:
    response = pbx_post(bridge.web, content)
    assert response.status_code in (200, 202, 400, 401), response.text
    assert {e["tenant"] for e in stream_items(bridge.redis)} <= {"contoso"}


# What a client may send in a header value: visible bytes, Latin-1's upper half included.
header_text = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c > 0x20 and c != 0x7F))


@given(
    msg_id=header_text,
    stamp=header_text | st.integers().map(lambda n: str(n).encode()),
    signature=header_text,
)
def test_any_unsigned_pbx_headers_get_a_401(
    bridge: Bridge, msg_id: bytes, stamp: bytes, signature: bytes
) -> None:
    headers = [
        (b"webhook-id", msg_id),
        (b"webhook-timestamp", stamp),
        (b"webhook-signature", signature),
    ]
    response = bridge.web.post("/pbx/events", content=b"{}", headers=headers)
    assert response.status_code in (400, 401), response.text
    assert stream_items(bridge.redis) == []


@given(stamp=header_text | st.integers().map(lambda n: str(n).encode()), content=pbx_bodies)
def test_any_legacy_request_gets_a_4xx_or_202(bridge: Bridge, stamp: bytes, content: bytes) -> None:
    response = legacy_post(bridge.web, content, stamp)
    assert response.status_code in (202, 400, 401, 409), response.text


forged_items = st.fixed_dictionaries(
    {
        "subscriptionId": st.just(SID) | json_values,
        "clientState": (st.text(max_size=70) | json_values).filter(lambda s: s != CLIENT_STATE),
    },
    optional=fields,
)


@pytest.mark.parametrize("path", ["/graph/notifications", "/graph/lifecycle"])
@given(items=st.lists(forged_items, min_size=1, max_size=4))
def test_items_without_their_subscriptions_client_state_are_never_queued(
    bridge: Bridge, path: str, items: list[dict[str, Any]]
) -> None:
    response = bridge.web.post(path, content=json.dumps({"value": items}).encode())
    assert response.status_code in (202, 400)
    assert stream_items(bridge.redis) == []


@given(tenant=st.sampled_from(["contoso", "fabrikam"]) | st.text(max_size=10))
def test_a_request_signed_with_another_secret_is_never_queued(bridge: Bridge, tenant: str) -> None:
    content = json.dumps({"tenant": tenant, "events": [{"type": "call_started",
                          "user": "alice", "call_id": "c1"}]}).encode()  # fmt: skip
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    [key] = standard_webhooks.parse_secrets(new_secret())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard_webhooks.sign(key, msg_id, stamp, content),
    }
    assert bridge.web.post("/pbx/events", content=content, headers=headers).status_code == 401
    assert stream_items(bridge.redis) == []
