"""Lifecycle events: sent by the emulator, accepted by the real webhook, drained by the clock.

The workers' forwarder (it moves lifecycle items to the tenant's inbox list) is played here
by moving the webhook's accepted items from the intake stream to that list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from core.queue import QUEUE_PRESENCE, queue
from core.state import intake
from core.state import subscriptions as sub_state
from subscriptions import lifecycle
from tests.subscriptions.conftest import Bridge, covered

DEADLINE_SECONDS = 10.0


def lifecycle_entries(client: redis.Redis) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    entries: list[tuple[bytes, dict[bytes, bytes]]]
    entries = client.xrange(intake.STREAM)  # type: ignore[assignment]
    for _, fields in entries:
        out += [e for e in orjson.loads(fields[b"items"]) if e["kind"] == "lifecycle"]
    return out


def deliver(bridge: Bridge, subscription_id: str, event: str) -> None:
    """Have Graph send `event`, wait until the webhook accepted it, hand it to the clock's inbox."""
    bridge.control.request("POST", f"/subscriptions/{subscription_id}/lifecycle",
                           {"lifecycleEvent": event})  # fmt: skip
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:  # the webhook's hand-off is a stream write, with no event to await
        entries = [
            e for e in lifecycle_entries(bridge.redis)
            if e["item"].get("lifecycleEvent") == event
            and e["item"].get("subscriptionId") == subscription_id
        ]  # fmt: skip
        if entries:
            break
        assert time.monotonic() < deadline, f"the webhook never accepted {event}"
        time.sleep(0.02)
    bridge.redis.delete(intake.STREAM)
    for entry in entries:
        bridge.redis.rpush(intake.lifecycle_inbox(entry["tenant"]), orjson.dumps(entry))


def swept_presences(client: redis.Redis) -> list[dict[str, Any]]:
    jobs = queue(client, QUEUE_PRESENCE).get_jobs()
    return [p for job in jobs for p in job.args[1]]


def test_reauthorization_required_renews_by_patch(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    bridge.control.advance_clock(10 * 60)
    deliver(bridge, sub.id, "reauthorizationRequired")
    report = lifecycle.drain(bridge.context())
    (after,) = bridge.live()
    assert report.renewed == bridge.accounts
    assert after.id == sub.id
    assert after.expiration - bridge.emulator.world.clock.now() > 55 * 60


def test_a_repeated_reauthorization_right_after_answering_one_is_not_renewed_again(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    ctx = bridge.context()  # the clock keeps its view of the tenant across ticks
    deliver(bridge, sub.id, "reauthorizationRequired")
    assert lifecycle.drain(ctx).renewed == bridge.accounts
    deliver(bridge, sub.id, "reauthorizationRequired")  # Graph repeats the challenge
    assert lifecycle.drain(ctx).renewed == []


def test_a_reauthorization_right_after_the_create_is_answered(
    bridge_factory: Callable[..., Bridge],
) -> None:
    """A create (or routine renewal) just before a revocation has not answered the challenge."""
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    deliver(bridge, sub.id, "reauthorizationRequired")
    assert lifecycle.drain(bridge.context()).renewed == bridge.accounts


def test_subscription_removed_recreates_and_resyncs(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    deliver(bridge, sub.id, "subscriptionRemoved")  # the emulator removes it too
    report = lifecycle.drain(bridge.context())
    (after,) = bridge.live()
    assert report.recreated == bridge.accounts and report.swept
    assert after.id != sub.id
    assert set(covered(bridge).values()) == {1}
    assert sub_state.read(bridge.redis, sub.id) is None
    assert sorted(p["id"] for p in swept_presences(bridge.redis)) == sorted(bridge.users)


def test_missed_resyncs_every_linked_user(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=30, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    deliver(bridge, sub.id, "missed")
    report = lifecycle.drain(bridge.context())
    presences = swept_presences(bridge.redis)
    assert report.swept
    assert sorted(p["id"] for p in presences) == sorted(bridge.users)
    assert all("availability" in p and "observedAt" in p for p in presences)
    assert [s.id for s in bridge.live()] == [sub.id]


def test_an_event_for_an_unknown_subscription_is_ignored(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=5, accounts=1)
    bridge.reconcile()
    report = lifecycle.handle_lifecycle(bridge.context(), [
        {"subscriptionId": "00000000-0000-0000-0000-000000000000",
         "lifecycleEvent": "reauthorizationRequired"},
    ])  # fmt: skip
    assert (report.ignored, report.renewed, report.recreated) == (1, [], [])


def test_an_empty_inbox_does_nothing(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=5, accounts=1)
    report = lifecycle.drain(bridge.context())
    assert report.summary()["renewed"] == 0 and not report.swept
