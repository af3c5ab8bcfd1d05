"""`/v1.0/subscriptions` against Graph's documented presence rules, over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from emulator.crypto import make_certificate
from emulator.subscriptions import CONFLICT, parse_time
from tests.emulator.graph import OTHER_APP, Graph, running_graph, user_id
from tests.emulator.subscriber import Subscriber, running_subscriber


@pytest.fixture
def graph() -> Iterator[Graph]:
    with running_graph(users=5, settings={"subscriptions_page_size": 2}) as g:
        yield g


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    with running_subscriber() as s:
        yield s


def test_create_returns_201_with_graph_fields(graph: Graph, subscriber: Subscriber) -> None:
    response = graph.subscribe(subscriber.url(), lifecycleNotificationUrl=subscriber.url("/life"))
    assert response.status_code == 201
    body = response.json()
    assert body["applicationId"] == "22222222-2222-2222-2222-222222222222"
    assert body["creatorId"] == "44444444-4444-4444-4444-444444444444"
    assert body["changeType"] == "updated"
    assert body["clientState"] == "secret-state"
    assert body["notificationContentType"] == "application/json"
    assert body["lifecycleNotificationUrl"] == subscriber.url("/life")
    assert body["includeResourceData"] is False
    assert body["latestSupportedTlsVersion"] == "v1_2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", body["expirationDateTime"])


@pytest.mark.parametrize(
    "resource", ["communications/presences/{id}", "/communications/presences/{id}"]
)
def test_single_presence_resource(graph: Graph, subscriber: Subscriber, resource: str) -> None:
    body = {
        "changeType": "updated",
        "notificationUrl": subscriber.url(),
        "resource": resource.format(id=user_id(1)),
        "expirationDateTime": graph.expiry(60),
    }
    assert (
        graph.client.post("/v1.0/subscriptions", json=body, headers=graph.token()).status_code
        == 201
    )


@pytest.mark.parametrize(("count", "status"), [(650, 201), (651, 400)])
def test_at_most_650_ids(graph: Graph, subscriber: Subscriber, count: int, status: int) -> None:
    ids = [user_id(n) for n in range(1, count + 1)]
    assert graph.subscribe(subscriber.url(), ids=ids).status_code == status


def test_second_presence_subscription_is_409(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url()).status_code == 201
    second = graph.subscribe(subscriber.url(), ids=[user_id(2)])
    assert second.status_code == 409
    assert CONFLICT in second.json()["error"]["message"]


def test_another_app_may_subscribe_for_the_same_user(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url()).status_code == 201
    other = graph.subscribe(subscriber.url(), headers=graph.token(app=OTHER_APP))
    assert other.status_code == 201


def test_app_only_token_is_403(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url(), headers=graph.app_token()).status_code == 403


def test_missing_token_is_401(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url(), headers={"x": "y"}).status_code == 401


def test_change_type_must_be_updated(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url(), changeType="created").status_code == 400


def test_over_60_minutes_is_400(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url(), minutes=61).status_code == 400


@pytest.mark.parametrize("minutes", [1, 30, 44])
def test_under_45_minutes_is_raised_to_45(
    graph: Graph, subscriber: Subscriber, minutes: float
) -> None:
    before = graph.world.clock.now()
    body = graph.subscribe(subscriber.url(), minutes=minutes).json()
    assert parse_time(body["expirationDateTime"]) >= before + 45 * 60


def test_gone_after_expiry(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url(), minutes=50).json()["id"]
    assert (
        graph.client.get(f"/v1.0/subscriptions/{sub_id}", headers=graph.token()).status_code == 200
    )
    graph.world.clock.advance(51 * 60)
    token = graph.token()
    assert graph.client.get(f"/v1.0/subscriptions/{sub_id}", headers=token).status_code == 404
    patch = {"expirationDateTime": graph.expiry(60)}
    assert (
        graph.client.patch(f"/v1.0/subscriptions/{sub_id}", json=patch, headers=token).status_code
        == 404
    )


def test_rich_needs_certificate_and_id(graph: Graph, subscriber: Subscriber) -> None:
    assert graph.subscribe(subscriber.url(), includeResourceData=True).status_code == 400
    _, certificate, _ = make_certificate()
    missing_id = graph.subscribe(
        subscriber.url(), includeResourceData=True, encryptionCertificate=certificate
    )
    assert missing_id.status_code == 400
    ok = graph.subscribe(
        subscriber.url(),
        includeResourceData=True,
        encryptionCertificate=certificate,
        encryptionCertificateId="k1",
    )
    assert ok.status_code == 201


@pytest.mark.parametrize("handshake", ["wrong-body", "wrong-type", "not-200", "encoded"])
def test_failed_handshake_is_400_and_no_subscription(graph: Graph, handshake: str) -> None:
    with running_subscriber(handshake=handshake) as bad:
        assert graph.subscribe(bad.url()).status_code == 400
    listed = graph.client.get("/v1.0/subscriptions", headers=graph.token()).json()
    assert listed["value"] == []


def test_handshake_token_needs_url_encoding(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url())
    token = subscriber.validations[0]
    assert any(c in token for c in " :+/=")


def test_both_urls_are_validated_even_when_equal(graph: Graph, subscriber: Subscriber) -> None:
    response = graph.subscribe(subscriber.url(), lifecycleNotificationUrl=subscriber.url())
    assert response.status_code == 201
    assert len(subscriber.validations) == 2


def test_failing_lifecycle_url_is_400(graph: Graph, subscriber: Subscriber) -> None:
    with running_subscriber(handshake="not-200") as bad:
        response = graph.subscribe(subscriber.url(), lifecycleNotificationUrl=bad.url())
    assert response.status_code == 400


def test_non_loopback_http_is_refused(graph: Graph) -> None:
    assert graph.subscribe("http://example.invalid/notify").status_code == 400


def test_list_pages_and_hides_client_state(graph: Graph, subscriber: Subscriber) -> None:
    for n in range(3):
        user = f"55555555-0000-0000-0000-00000000000{n}"
        assert graph.subscribe(subscriber.url(), headers=graph.token(user=user)).status_code == 201
    app_token = graph.app_token()
    seen: list[dict[str, object]] = []
    page = graph.client.get("/v1.0/subscriptions", headers=app_token).json()
    seen.extend(page["value"])
    while "@odata.nextLink" in page:
        page = graph.client.get(page["@odata.nextLink"], headers=app_token).json()
        seen.extend(page["value"])
    assert len(seen) == 3
    assert all("clientState" not in s for s in seen)


def test_delegated_list_shows_only_own_user(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url())
    other = graph.token(user="55555555-0000-0000-0000-000000000009")
    graph.subscribe(subscriber.url(), headers=other)
    listed = graph.client.get("/v1.0/subscriptions", headers=other).json()["value"]
    assert [s["creatorId"] for s in listed] == ["55555555-0000-0000-0000-000000000009"]


def test_patch_renews_with_bounds(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url(), minutes=50).json()["id"]
    graph.world.clock.advance(30 * 60)
    url = f"/v1.0/subscriptions/{sub_id}"
    too_far = graph.client.patch(
        url, json={"expirationDateTime": graph.expiry(61)}, headers=graph.token()
    )
    assert too_far.status_code == 400
    renewed = graph.client.patch(
        url, json={"expirationDateTime": graph.expiry(60)}, headers=graph.token()
    )
    assert renewed.status_code == 200
    assert parse_time(renewed.json()["expirationDateTime"]) > graph.world.clock.now() + 59 * 60


@pytest.mark.parametrize("field", ["lifecycleNotificationUrl", "resource", "clientState"])
def test_patch_refuses_other_fields(graph: Graph, subscriber: Subscriber, field: str) -> None:
    sub_id = graph.subscribe(subscriber.url()).json()["id"]
    response = graph.client.patch(
        f"/v1.0/subscriptions/{sub_id}", json={field: subscriber.url("/x")}, headers=graph.token()
    )
    assert response.status_code == 400


def test_delete_is_204_then_404(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url()).json()["id"]
    url = f"/v1.0/subscriptions/{sub_id}"
    assert graph.client.delete(url, headers=graph.token()).status_code == 204
    assert graph.client.get(url, headers=graph.token()).status_code == 404
    assert graph.subscribe(subscriber.url()).status_code == 201  # the 409 slot is free again


def test_reauthorize_is_204(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url()).json()["id"]
    response = graph.client.post(f"/v1.0/subscriptions/{sub_id}/reauthorize", headers=graph.token())
    assert response.status_code == 204


def test_other_app_cannot_see_the_subscription(graph: Graph, subscriber: Subscriber) -> None:
    sub_id = graph.subscribe(subscriber.url()).json()["id"]
    response = graph.client.get(f"/v1.0/subscriptions/{sub_id}", headers=graph.token(app=OTHER_APP))
    assert response.status_code == 404
