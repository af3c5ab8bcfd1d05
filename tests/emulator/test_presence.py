"""Presence routes: reads, the write APIs with Microsoft's aggregation, and change notifications."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from tests.emulator.graph import APP, OTHER_APP, Graph, running_graph, user_id
from tests.emulator.subscriber import running_subscriber

U1 = user_id(1)


@pytest.fixture
def graph() -> Iterator[Graph]:
    with running_graph(users=3) as g:
        yield g


def presence(graph: Graph, uid: str = U1) -> dict[str, str]:
    response = graph.client.get(f"/v1.0/users/{uid}/presence", headers=graph.app_token())
    assert response.status_code == 200
    body: dict[str, str] = response.json()
    return body


def pair(graph: Graph, uid: str = U1) -> tuple[str, str]:
    body = presence(graph, uid)
    return body["availability"], body["activity"]


def post(
    graph: Graph, action: str, body: Mapping[str, object], uid: str = U1, app: str = APP
) -> int:
    response = graph.client.post(
        f"/v1.0/users/{uid}/presence/{action}", json=body, headers=graph.token(user=None, app=app)
    )
    return response.status_code


def set_presence(graph: Graph, availability: str, activity: str, **extra: object) -> int:
    return post(
        graph,
        "setPresence",
        {"sessionId": APP, "availability": availability, "activity": activity, **extra},
    )


def test_user_without_session_is_offline(graph: Graph) -> None:
    body = presence(graph)
    assert (body["id"], body["availability"], body["activity"]) == (U1, "Offline", "Offline")
    assert isinstance(body["sequenceNumber"], str)


def test_communications_presence_route(graph: Graph) -> None:
    response = graph.client.get(f"/v1.0/communications/presences/{U1}", headers=graph.token())
    assert response.status_code == 200 and response.json()["id"] == U1


def test_unknown_user_is_404(graph: Graph) -> None:
    response = graph.client.get("/v1.0/users/nobody/presence", headers=graph.app_token())
    assert response.status_code == 404


def test_set_presence_shows_and_grows_sequence(graph: Graph) -> None:
    before = presence(graph)["sequenceNumber"]
    assert set_presence(graph, "Busy", "InACall") == 200
    after = presence(graph)
    assert (after["availability"], after["activity"]) == ("Busy", "InACall")
    assert after["sequenceNumber"] > before


@pytest.mark.parametrize(
    ("availability", "activity"), [("Busy", "InAMeeting"), ("Available", "OutOfOffice")]
)
def test_set_presence_refuses_other_pairs(graph: Graph, availability: str, activity: str) -> None:
    assert set_presence(graph, availability, activity) == 400


def test_session_id_must_be_the_caller(graph: Graph) -> None:
    body = {"sessionId": OTHER_APP, "availability": "Busy", "activity": "InACall"}
    assert post(graph, "setPresence", body) == 400


@pytest.mark.parametrize("duration", ["PT1M", "PT5H"])
def test_expiration_duration_bounds(graph: Graph, duration: str) -> None:
    assert set_presence(graph, "Busy", "InACall", expirationDuration=duration) == 400


def test_session_expires_to_offline(graph: Graph) -> None:
    set_presence(graph, "Busy", "InACall", expirationDuration="PT10M")
    graph.world.clock.advance(11 * 60)
    assert pair(graph) == ("Offline", "Offline")


def test_available_app_session_goes_inactive_then_away(graph: Graph) -> None:
    set_presence(graph, "Available", "Available", expirationDuration="PT1H")
    graph.world.clock.advance(5 * 60)
    assert pair(graph) == ("Available", "AvailableInactive")
    graph.world.clock.advance(5 * 60)
    assert pair(graph) == ("Away", "Away")


def test_clear_presence_removes_the_session(graph: Graph) -> None:
    set_presence(graph, "Busy", "InACall")
    assert post(graph, "clearPresence", {"sessionId": APP}) == 200
    assert pair(graph) == ("Offline", "Offline")


def test_clear_presence_without_session_is_404(graph: Graph) -> None:
    assert post(graph, "clearPresence", {"sessionId": APP}) == 404


def test_preferred_beats_session_and_clears(graph: Graph) -> None:
    set_presence(graph, "Busy", "InACall", expirationDuration="PT1H")
    body = {"availability": "DoNotDisturb", "activity": "DoNotDisturb"}
    assert post(graph, "setUserPreferredPresence", body) == 200
    assert pair(graph) == ("DoNotDisturb", "DoNotDisturb")
    assert post(graph, "clearUserPreferredPresence", {}) == 200
    assert pair(graph) == ("Busy", "InACall")


def test_preferred_alone_is_offline(graph: Graph) -> None:
    assert (
        post(graph, "setUserPreferredPresence", {"availability": "Busy", "activity": "Busy"}) == 200
    )
    assert pair(graph) == ("Offline", "Offline")


def test_preferred_refuses_session_pairs(graph: Graph) -> None:
    body = {"availability": "Busy", "activity": "InACall"}
    assert post(graph, "setUserPreferredPresence", body) == 400


def test_teams_session_and_app_session_aggregate(graph: Graph) -> None:
    graph.set_presence(U1, "Away", "Away")  # a Teams client, through the control API
    set_presence(graph, "DoNotDisturb", "Presenting", expirationDuration="PT1H")
    assert pair(graph) == ("DoNotDisturb", "Presenting")
    post(graph, "clearPresence", {"sessionId": APP})
    assert pair(graph) == ("Away", "Away")


@pytest.mark.parametrize(("count", "status"), [(650, 200), (651, 400)])
def test_get_presences_by_user_id_limit(graph: Graph, count: int, status: int) -> None:
    ids = [user_id(n) for n in range(1, count + 1)]
    response = graph.client.post(
        "/v1.0/communications/getPresencesByUserId", json={"ids": ids}, headers=graph.app_token()
    )
    assert response.status_code == status


@pytest.mark.parametrize("delegated", [True, False])
def test_get_presences_by_user_id_app_or_delegated(graph: Graph, delegated: bool) -> None:
    graph.set_presence(user_id(2), "Busy", "InAMeeting")
    headers = graph.token() if delegated else graph.app_token()
    response = graph.client.post(
        "/v1.0/communications/getPresencesByUserId", json={"ids": [U1, user_id(2)]}, headers=headers
    )
    value = {p["id"]: p["availability"] for p in response.json()["value"]}
    assert value == {U1: "Offline", user_id(2): "Busy"}


def test_change_of_aggregate_notifies_once(graph: Graph) -> None:
    with running_subscriber() as subscriber:
        graph.subscribe(subscriber.url())
        set_presence(graph, "Busy", "InACall", expirationDuration="PT1H")
        set_presence(graph, "Busy", "InACall", expirationDuration="PT1H")  # same aggregate
        set_presence(graph, "Away", "Away", expirationDuration="PT1H")
        items = subscriber.wait_items(2)
        assert len(items) == 2


def test_session_expiry_notifies(graph: Graph) -> None:
    with running_subscriber() as subscriber:
        graph.subscribe(subscriber.url())
        set_presence(graph, "Busy", "InACall", expirationDuration="PT10M")
        subscriber.wait_items(1)
        graph.world.clock.advance(10 * 60)
        subscriber.wait_items(2)  # Busy -> Offline without any request
        assert pair(graph) == ("Offline", "Offline")


def test_sequence_grows_with_each_change(graph: Graph) -> None:
    seen = []
    for availability, activity in [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("Available", "Available"),
    ]:
        set_presence(graph, availability, activity)
        seen.append(presence(graph)["sequenceNumber"])
    assert seen == sorted(seen) and len(set(seen)) == 3
