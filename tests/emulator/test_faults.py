"""Fault switches: route throttling, 5xx bursts, latency, and delivery mischief."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator.graph import Graph, running_graph, user_id
from tests.emulator.subscriber import Subscriber, running_subscriber

PRESENCE = f"/v1.0/users/{user_id(1)}/presence"


@pytest.fixture
def graph() -> Iterator[Graph]:
    with running_graph(users=5, settings={"delivery_batch_window": 0.0}) as g:
        yield g


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    with running_subscriber() as s:
        yield s


def add(graph: Graph, target: str, spec: dict[str, object]) -> None:
    response = graph.client.post(f"/_emulator/faults/{target}", json=spec)
    assert response.status_code == 201, response.text


def test_throttle_answers_429_with_retry_after(graph: Graph) -> None:
    add(graph, "routes", {"kind": "throttle", "path": "/presence$", "retryAfter": 7, "count": 1})
    throttled = graph.client.get(PRESENCE, headers=graph.app_token())
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert graph.client.get(PRESENCE, headers=graph.app_token()).status_code == 200


def test_error_burst_fails_the_next_n_requests(graph: Graph) -> None:
    add(graph, "routes", {"kind": "error", "status": 502, "path": "presence", "count": 2})
    statuses = [graph.client.get(PRESENCE, headers=graph.app_token()).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


def test_fault_matches_method(graph: Graph) -> None:
    add(graph, "routes", {"kind": "error", "path": "subscriptions", "method": "POST"})
    assert graph.client.get("/v1.0/subscriptions", headers=graph.token()).status_code == 200


def test_control_routes_are_never_faulted(graph: Graph) -> None:
    add(graph, "routes", {"kind": "error", "path": ".*"})
    assert graph.client.get("/_emulator/faults").status_code == 200


def test_latency_delays_then_answers(graph: Graph) -> None:
    add(graph, "routes", {"kind": "latency", "path": "presence", "latency": 0.2, "count": 1})
    response = graph.client.get(PRESENCE, headers=graph.app_token())
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.2


def test_clearing_removes_switches(graph: Graph) -> None:
    add(graph, "routes", {"kind": "throttle", "path": "presence"})
    assert graph.client.delete("/_emulator/faults").status_code == 204
    assert graph.client.get(PRESENCE, headers=graph.app_token()).status_code == 200


@pytest.mark.parametrize(
    "spec", [{"kind": "nope"}, {"kind": "error", "status": 404}, {"kind": "throttle", "path": "("}]
)
def test_bad_switch_is_400(graph: Graph, spec: dict[str, object]) -> None:
    assert graph.client.post("/_emulator/faults/routes", json=spec).status_code == 400


def change(graph: Graph, n: int) -> None:
    graph.set_presence(
        user_id(1), *[("Busy", "InACall"), ("Away", "Away"), ("Available", "Available")][n % 3]
    )


def test_drop_loses_the_next_notification(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url())
    add(graph, "delivery", {"kind": "drop", "count": 1})
    change(graph, 0)
    change(graph, 1)
    subscriber.wait_items(1)
    dropped = graph.client.get("/_emulator/deliveries").json()["dropped"]
    assert [d["reason"] for d in dropped] == ["fault: drop"]


def test_duplicate_sends_twice(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url())
    add(graph, "delivery", {"kind": "duplicate", "count": 1})
    change(graph, 0)
    items = subscriber.wait_items(2)
    assert items[0] == items[1]


def test_reorder_swaps_posts(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url(), ids=[user_id(1), user_id(2)])
    add(graph, "delivery", {"kind": "reorder", "count": 2})
    graph.set_presence(user_id(1), "Busy", "InACall")
    graph.set_presence(user_id(2), "Busy", "InACall")
    subscriber.wait_items(2)
    order = [p.body["value"][0]["resourceData"]["id"] for p in subscriber.posts]
    assert order == [user_id(2), user_id(1)]


def test_delay_holds_until_the_clock_passes(graph: Graph, subscriber: Subscriber) -> None:
    graph.subscribe(subscriber.url(), ids=[user_id(1), user_id(2)])
    add(graph, "delivery", {"kind": "delay", "count": 1, "seconds": 120})
    graph.set_presence(user_id(1), "Busy", "InACall")
    graph.set_presence(user_id(2), "Busy", "InACall")
    subscriber.wait_items(1)
    graph.world.clock.advance(120)
    items = subscriber.wait_items(2)
    assert [i["resourceData"]["id"] for i in items] == [user_id(2), user_id(1)]
