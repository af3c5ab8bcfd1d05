from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import cast

import httpx
import orjson
import pytest
import redis

from core.state import intake
from emulator.harness.redis_server import StreamEntries
from tests.webhook.conftest import presence_item, stream_items

Sub = Callable[..., tuple[str, str]]


def post(web: httpx.Client, items: list[dict[str, object]], **extra: object) -> httpx.Response:
    return web.post("/graph/notifications", json={"value": items, **extra})


def test_known_subscription_with_matching_client_state_is_accepted(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    response = post(web, [presence_item(sid, state, user_id="u1")])
    assert response.status_code == 202
    [entry] = stream_items(redis_client)
    assert (entry["tenant"], entry["item"]["userId"]) == ("contoso", "u1")


def test_client_state_never_reaches_redis(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    post(web, [presence_item(sid, state)])
    dump = b"".join(
        b"".join(
            f
            for pair in cast(StreamEntries, redis_client.xrange(intake.STREAM))
            for f in pair[1].values()
        )
        for _ in [0]
    )
    assert state.encode() not in dump


def test_mixed_batch_keeps_only_verified_items_and_counts_the_rest(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    items = [
        presence_item(sid, state, user_id="good"),
        presence_item(str(uuid.uuid4()), state, user_id="unknown-sub"),
        presence_item(sid, "wrong" + state, user_id="forged"),
        presence_item(sid, None, user_id="no-state"),  # type: ignore[arg-type]
    ]
    assert post(web, items).status_code == 202
    assert [e["item"]["userId"] for e in stream_items(redis_client)] == ["good"]
    metrics = cast(dict[bytes, bytes], redis_client.hgetall(intake.METRICS))
    counters = {k.decode(): int(v) for k, v in metrics.items()}
    assert counters == {
        "received": 4,
        "accepted": 1,
        "dropped:unknown_subscription": 1,
        "dropped:client_state_mismatch": 2,
    }


def test_forged_only_batch_still_gets_202(web: httpx.Client) -> None:
    response = post(web, [presence_item(str(uuid.uuid4()), "guess")])
    assert response.status_code == 202


def test_all_items_of_a_request_become_one_stream_entry(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    post(web, [presence_item(sid, state, id=str(n)) for n in range(50)])
    assert redis_client.xlen(intake.STREAM) == 1
    assert len(stream_items(redis_client)) == 50


def test_redelivered_notification_is_absorbed(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    item = presence_item(sid, state, id="notification-1")
    post(web, [item])
    post(web, [item])
    assert len(stream_items(redis_client)) == 1


def test_dedup_key_of_an_identified_notification_lives_at_least_a_day(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    post(web, [presence_item(sid, state, id="notification-2")])
    [key] = redis_client.keys(intake.dedup_key("*"))
    assert redis_client.ttl(key) >= 24 * 3600 - 5


def test_bare_basic_notification_dedup_is_short_so_later_changes_pass(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    post(web, [presence_item(sid, state, user_id="u1")])
    [key] = redis_client.keys(intake.dedup_key("*"))
    assert 0 < redis_client.ttl(key) <= 5


def test_rich_items_carry_the_collection_validation_tokens(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    item = presence_item(sid, state, encryptedContent={"data": "abc", "dataKey": "k"})
    post(web, [item], validationTokens=["jwt-1", "jwt-2"])
    [entry] = stream_items(redis_client)
    assert entry["validationTokens"] == ["jwt-1", "jwt-2"]


def test_empty_value_is_accepted(web: httpx.Client) -> None:
    assert post(web, []).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"value": {}}',
        b'{"items": []}',
        b'"text"',
        b'{"value": [], "validationTokens": "x"}',
    ],
    ids=["malformed", "array", "value-not-list", "no-value", "string", "tokens-not-list"],
)
def test_wrong_shape_is_a_400_with_a_json_error(web: httpx.Client, body: bytes) -> None:
    response = web.post("/graph/notifications", content=body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_declared_oversize_body_is_a_413_before_it_is_sent(web: httpx.Client) -> None:
    # Only the headers go out: the answer must come without the 2 MiB ever arriving.
    host, port = web.base_url.host, web.base_url.port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /graph/notifications HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 9437184\r\n\r\n{"
        )
        status_line = sock.recv(64).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"


def test_body_that_grows_past_the_limit_is_a_413(web: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(90):
            yield b" " * 100_000  # chunked: no Content-Length to trust; 9 MB in all

    response = web.post("/graph/notifications", content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_a_405(web: httpx.Client, method: str) -> None:
    assert web.request(method, "/graph/notifications").status_code == 405


class TestQuirks:
    def test_url_encoded_resource_is_decoded(
        self, web: httpx.Client, subscription: Sub, redis_client: redis.Redis
    ) -> None:
        sid, state = subscription()
        item = presence_item(sid, state)
        item["resource"] = "communications/presences?$filter=id+in+(%27u-9%27)"
        del item["resourceData"]
        post(web, [item])
        [entry] = stream_items(redis_client)
        assert entry["item"]["resource"] == "communications/presences?$filter=id in ('u-9')"

    @pytest.mark.parametrize("key", ["@odata.type", "@odata.Type", "@OData.type"])
    def test_odata_type_in_either_case(
        self, web: httpx.Client, subscription: Sub, redis_client: redis.Redis, key: str
    ) -> None:
        sid, state = subscription()
        item = presence_item(sid, state)
        item["resourceData"] = {key: "#Microsoft.Graph.presence", "id": "u1"}
        post(web, [item])
        [entry] = stream_items(redis_client)
        assert entry["item"]["resourceData"]["@odata.type"] == "#microsoft.graph.presence"

    def test_seven_digit_timestamp_without_offset_is_utc(
        self, web: httpx.Client, subscription: Sub, redis_client: redis.Redis
    ) -> None:
        sid, state = subscription()
        post(
            web,
            [
                presence_item(
                    sid, state, subscriptionExpirationDateTime="2024-04-19T23:58:00.4569264"
                )
            ],
        )
        [entry] = stream_items(redis_client)
        assert entry["item"]["subscriptionExpirationDateTime"] == "2024-04-19T23:58:00.456926+00:00"

    def test_unknown_keys_such_as_organization_id_are_kept(
        self, web: httpx.Client, subscription: Sub, redis_client: redis.Redis
    ) -> None:
        sid, state = subscription()
        post(web, [presence_item(sid, state, organizationId="org-1")])
        [entry] = stream_items(redis_client)
        assert entry["item"]["organizationId"] == "org-1"

    def test_lifecycle_item_without_change_type_or_resource(
        self, web: httpx.Client, subscription: Sub, redis_client: redis.Redis
    ) -> None:
        sid, state = subscription()
        item = {
            "subscriptionId": sid,
            "clientState": state,
            "lifecycleEvent": "missed",
            "subscriptionExpirationDateTime": "2026-11-22T10:00:00+00:00",
            "tenantId": "t",
        }
        assert web.post("/graph/lifecycle", json={"value": [item]}).status_code == 202
        [entry] = stream_items(redis_client)
        assert (entry["kind"], entry["item"]["lifecycleEvent"]) == ("lifecycle", "missed")


def test_stream_entry_is_valid_json(
    web: httpx.Client, subscription: Sub, redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    post(web, [presence_item(sid, state), presence_item(sid, state)])
    [(_, fields)] = cast(StreamEntries, redis_client.xrange(intake.STREAM))
    assert len(orjson.loads(fields[b"items"])) == 2
