"""Delivery of change and lifecycle notifications to a real subscriber, under emulated time."""

# Graph mandates SHA-1 for the OAEP key wrap.
# ruff: noqa: S303

from __future__ import annotations

from collections.abc import Callable, Iterator

import jwt
import pytest

from emulator.crypto import make_certificate
from emulator.delivery import CHANGE_TRACKING_APP_ID, engine_for
from emulator.tokens import jwks
from emulator.world import Delivery
from tests.emulator.conftest import poll
from tests.emulator.decryption import open_by_hand
from tests.emulator.graph import APP, TENANT, Graph, running_graph, user_id
from tests.emulator.subscriber import Subscriber, running_subscriber

FAST = {"delivery_retry_base": 10.0, "delivery_timeout": 0.3, "delivery_retry_timeout": 0.6}


def attempts(graph: Graph, kind: str = "notification") -> list[Delivery]:
    with graph.world.lock:
        return [d for d in graph.world.deliveries if d.kind == kind]


def retry_waiting(graph: Graph, made: int) -> Callable[[], bool]:
    """True once `made` attempts are recorded and the next one is scheduled."""
    engine = engine_for(graph.world)
    return lambda: len(attempts(graph)) == made and engine.retries_waiting == 1


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    with running_subscriber() as s:
        yield s


@pytest.fixture
def graph() -> Iterator[Graph]:
    with running_graph(users=5, settings=FAST) as g:
        yield g


def test_basic_notification_carries_only_the_user_id(graph: Graph, subscriber: Subscriber) -> None:
    sub = graph.subscribe(subscriber.url("/notify?tenant=a")).json()
    graph.set_presence(user_id(1), "Busy", "InACall")
    [item] = subscriber.wait_items(1)
    assert subscriber.posts[0].query == "tenant=a"  # the notificationUrl's query is kept
    assert item["subscriptionId"] == sub["id"]
    assert item["changeType"] == "updated"
    assert item["clientState"] == "secret-state"
    assert item["tenantId"] == TENANT
    assert item["resourceData"] == {
        "@odata.type": "#microsoft.graph.presence",
        "@odata.id": f"users/{user_id(1)}/presence",
        "id": user_id(1),
    }
    assert "encryptedContent" not in item
    assert "validationTokens" not in subscriber.posts[0].body


def test_unsubscribed_user_is_not_notified(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url(), ids=[user_id(1)])
    graph.set_presence(user_id(2), "Busy", "InACall")
    graph.set_presence(user_id(1), "Away", "Away")
    items = subscriber.wait_items(1)
    assert [i["resourceData"]["id"] for i in items] == [user_id(1)]


def test_rich_notification_decrypts_and_has_validation_tokens(
    graph: Graph, subscriber: Subscriber
) -> None:
    private_pem, certificate, _ = make_certificate()
    graph.subscribe(
        subscriber.url(),
        includeResourceData=True,
        encryptionCertificate=certificate,
        encryptionCertificateId="key-1",
    )
    graph.set_presence(user_id(1), "DoNotDisturb", "Presenting")
    [item] = subscriber.wait_items(1)
    content = item["encryptedContent"]
    assert content["encryptionCertificateId"] == "key-1"
    resource = open_by_hand(content, private_pem)
    assert (resource["id"], resource["availability"], resource["activity"]) == (
        user_id(1),
        "DoNotDisturb",
        "Presenting",
    )
    [token] = subscriber.posts[0].body["validationTokens"]
    public_key = jwt.PyJWK(jwks(graph.world)["keys"][0]).key
    claims = jwt.decode(token, public_key, algorithms=["RS256"], audience=APP)
    assert claims["azp"] == claims["appid"] == CHANGE_TRACKING_APP_ID
    assert claims["tid"] == TENANT
    assert 23 * 3600 < claims["exp"] - claims["iat"] <= 24 * 3600


def test_changes_share_one_post() -> None:
    with (
        running_graph(users=5, settings={**FAST, "delivery_batch_window": 0.5}) as graph,
        running_subscriber() as subscriber,
    ):
        ids = [user_id(n) for n in range(1, 6)]
        graph.subscribe(subscriber.url(), ids=ids)
        response = graph.client.post(
            "/_emulator/presence",
            json={"userIds": ids, "availability": "Busy", "activity": "InACall"},
        )
        assert response.status_code == 200
        subscriber.wait_items(5)
        assert len(subscriber.posts) < 5


def test_failed_post_is_retried_with_backoff_on_emulated_time(
    graph: Graph, subscriber: Subscriber
) -> None:
    subscriber.statuses = [500, 503]
    graph.subscribe(subscriber.url())
    graph.set_presence(user_id(1), "Busy", "InACall")
    for step, advance in enumerate([10.0, 20.0], start=1):
        poll(retry_waiting(graph, step))
        graph.world.clock.advance(advance)
    subscriber.wait_for(lambda s: len(s.posts) == 3)
    poll(lambda: len(attempts(graph)) == 3)
    made = attempts(graph)
    assert [d.status for d in made] == [500, 503, 202]
    assert [d.attempt for d in made] == [1, 2, 3]
    assert made[1].sent_at - made[0].sent_at >= 10
    assert made[2].sent_at - made[1].sent_at >= 20
    assert made[0].body == made[2].body  # a retry resends the same collection


def test_no_answer_in_time_is_a_failure(graph: Graph, subscriber: Subscriber) -> None:
    subscriber.delay = 1.0
    graph.subscribe(subscriber.url())
    graph.set_presence(user_id(1), "Busy", "InACall")
    poll(lambda: len(attempts(graph)) == 1)
    assert attempts(graph)[0].status is None


def test_retries_stop_at_the_horizon() -> None:
    settings = {**FAST, "delivery_horizon": 60.0}
    with running_graph(settings=settings) as graph, running_subscriber() as subscriber:
        subscriber.statuses = [500] * 10
        graph.subscribe(subscriber.url())
        graph.set_presence(user_id(1), "Busy", "InACall")
        engine = engine_for(graph.world)
        # Attempts at 0, 10 and 30 s; the next would be at 70 s, past the 60 s horizon.
        for step, advance in enumerate([10.0, 20.0], start=1):
            poll(retry_waiting(graph, step))
            graph.world.clock.advance(advance)
        poll(lambda: len(engine.dropped) == 1)
        assert len(attempts(graph)) == 3
        assert engine.dropped[0]["reason"] == "retry horizon reached"


@pytest.mark.parametrize("event", ["subscriptionRemoved", "missed", "reauthorizationRequired"])
def test_lifecycle_event_from_control(graph: Graph, subscriber: Subscriber, event: str) -> None:
    sub = graph.subscribe(subscriber.url(), lifecycleNotificationUrl=subscriber.url("/life")).json()
    response = graph.client.post(
        f"/_emulator/subscriptions/{sub['id']}/lifecycle", json={"lifecycleEvent": event}
    )
    assert response.json()["sent"] is True
    [item] = subscriber.wait_items(1, path="/life")
    assert set(item) == {
        "subscriptionId",
        "subscriptionExpirationDateTime",
        "tenantId",
        "clientState",
        "lifecycleEvent",
    }
    assert item["lifecycleEvent"] == event
    still_there = graph.client.get(f"/v1.0/subscriptions/{sub['id']}", headers=graph.token())
    assert still_there.status_code == (404 if event == "subscriptionRemoved" else 200)


def test_reauthorization_required_before_token_expiry(graph: Graph, subscriber: Subscriber) -> None:
    token = graph.token(lifetime=20 * 60)
    graph.subscribe(
        subscriber.url(), lifecycleNotificationUrl=subscriber.url("/life"), headers=token
    )
    graph.world.clock.advance(6 * 60)  # the token now has 14 minutes left
    [item] = subscriber.wait_items(1, path="/life")
    assert item["lifecycleEvent"] == "reauthorizationRequired"


def test_notifications_wait_for_reauthorization(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url(), headers=graph.token(lifetime=20 * 60)).json()["id"]
    graph.world.clock.advance(21 * 60)  # the subscription's token has expired
    graph.set_presence(user_id(1), "Busy", "InACall")
    engine = engine_for(graph.world)
    poll(lambda: sum(len(v) for v in engine._held.values()) == 1)
    assert subscriber.posts == []
    response = graph.client.post(f"/v1.0/subscriptions/{sub_id}/reauthorize", headers=graph.token())
    assert response.status_code == 204
    [item] = subscriber.wait_items(1)
    assert item["resourceData"]["id"] == user_id(1)


def test_slow_endpoint_delays_new_notifications(subscriber: Subscriber) -> None:
    settings = {**FAST, "delivery_health_min_samples": 1}
    with running_graph(settings=settings) as graph:
        subscriber.delay = 0.5  # over the 0.3 s first-attempt limit
        graph.subscribe(subscriber.url())
        graph.set_presence(user_id(1), "Busy", "InACall")
        poll(lambda: len(attempts(graph)) == 1)
        subscriber.delay = 0.0
        state = graph.client.get("/_emulator/delivery/health").json()["value"][0]
        assert state["state"] == "slow"
        graph.set_presence(user_id(2), "Busy", "InACall")  # user 2 is not subscribed
        graph.set_presence(user_id(1), "Away", "Away")
        engine = engine_for(graph.world)
        poll(lambda: engine.health[subscriber.url()].delayed == 1)
        graph.world.clock.advance(600)
        subscriber.wait_for(
            lambda s: any(
                i.get("resourceData", {}).get("id") == user_id(1) and p.body is not None
                for p in s.posts[1:]
                for i in p.body["value"]
            )
        )
