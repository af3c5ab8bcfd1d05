"""The intake records against a real Redis: stream, dedup keys, counters, log, lifecycle inbox."""

from __future__ import annotations

from typing import Any

import orjson
import redis

from core.state import intake

TENANT = "contoso"


def append(client: redis.Redis, entries: list[intake.Accepted]) -> int:
    script = client.register_script(intake.APPEND_SCRIPT)
    return int(script(keys=list(intake.APPEND_KEYS), args=intake.script_args(entries, {})))


def basic(user: str) -> intake.Accepted:
    return intake.Accepted(TENANT, "notification", {"subscriptionId": "s", "userId": user})


def lifecycle(event: str) -> dict[str, str]:
    return {"subscriptionId": "s", "lifecycleEvent": event}


def test_depth_counts_waiting_and_in_flight(redis_client: redis.Redis) -> None:
    for n in range(3):
        redis_client.xadd(intake.STREAM, {"n": n})
    redis_client.xgroup_create(intake.STREAM, intake.GROUP, id="0")
    redis_client.xreadgroup(intake.GROUP, "w1", {intake.STREAM: ">"}, count=2)

    assert intake.depth(redis_client) == (3, 2)


def test_depth_without_a_stream_is_zero(redis_client: redis.Redis) -> None:
    assert intake.depth(redis_client) == (0, 0)


def test_a_redelivery_is_dropped_and_counted(redis_client: redis.Redis) -> None:
    item = intake.Accepted(TENANT, "notification", {"subscriptionId": "s", "id": "n1"})
    assert (append(redis_client, [item]), append(redis_client, [item])) == (1, 0)
    assert intake.counters(redis_client) == {"accepted": 1, "dropped:duplicate": 1}


def test_the_same_pbx_event_from_two_tenants_is_two_items(redis_client: redis.Redis) -> None:
    event = {"type": "call_started", "user": "alice", "call_id": "1"}
    items = [intake.Accepted(tenant, "pbx", event) for tenant in (TENANT, "fabrikam")]
    assert append(redis_client, items) == 2


def test_an_item_round_trips_and_tolerates_missing_fields() -> None:
    item = intake.Accepted(TENANT, "notification", {"id": "n1"}, validation_tokens=["t"])
    assert intake.Accepted.from_bytes(item.to_bytes()) == item
    assert intake.Accepted.from_json({"tenant": TENANT, "item": {"id": "n1"}}) == (
        intake.Accepted(TENANT, "notification", {"id": "n1"})
    )


def test_only_bare_dedup_keys_are_forgotten(redis_client: redis.Redis) -> None:
    with_id = intake.Accepted(TENANT, "notification", {"subscriptionId": "s", "id": "n1"})
    append(redis_client, [basic("u1"), with_id])
    entries = [orjson.loads(e.to_bytes()) for e in (basic("u1"), with_id)]
    intake.forget_bare_dedup(redis_client, entries)
    assert redis_client.keys(intake.dedup_key("*")) == [with_id.dedup_key()[0].encode()]


def test_lifecycle_items_reach_the_inbox_and_the_log(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline()
    intake.queue_lifecycle(pipe, TENANT, [{"tenant": TENANT, "kind": "lifecycle",
                                           "item": lifecycle("missed")}])  # fmt: skip
    pipe.execute()
    assert intake.take_lifecycle(redis_client, TENANT, 10) == [lifecycle("missed")]
    assert redis_client.xlen(intake.notification_log(TENANT)) == 1


def test_the_inbox_reads_envelopes_lists_and_skips_what_it_cannot_read(
    redis_client: redis.Redis,
) -> None:
    inbox = intake.lifecycle_inbox(TENANT)
    redis_client.rpush(
        inbox,
        orjson.dumps({"kind": "lifecycle", "item": lifecycle("missed")}),
        orjson.dumps([lifecycle("subscriptionRemoved")]),
        b"not json",
        orjson.dumps("a string"),
    )
    assert intake.take_lifecycle(redis_client, TENANT, 10) == [
        {"kind": "lifecycle", "item": lifecycle("missed")},
        lifecycle("subscriptionRemoved"),
    ]
    assert redis_client.llen(inbox) == 0


def test_counters_add_up(redis_client: redis.Redis) -> None:
    intake.add_counters(redis_client, {"dropped:rich_signature": 2})
    intake.add_counters(redis_client, {"dropped:rich_signature": 1})
    assert intake.counters(redis_client) == {"dropped:rich_signature": 3}


def test_a_queued_append_runs_the_same_script_inside_a_transaction(
    redis_client: redis.Redis,
) -> None:
    redis_client.script_flush()  # the pipeline loads the script itself
    call = {"type": "call_started", "user": "alice", "call_id": "c1"}
    pipe = redis_client.pipeline(transaction=True)
    intake.queue_append(pipe, [intake.Accepted(TENANT, "pbx", call)], {"calls": 1})
    pipe.set("pb:elsewhere", "1")  # something of another record, in the same MULTI
    assert pipe.execute()[0] == 1
    pipe = redis_client.pipeline(transaction=True)
    intake.queue_append(pipe, [intake.Accepted(TENANT, "pbx", call)], {"calls": 1})
    assert pipe.execute() == [0]  # the same item again: dropped as a duplicate

    entries: Any = redis_client.xrange(intake.STREAM)
    (entry,) = entries
    assert intake.decode_entry(entry[1]) == [{"tenant": TENANT, "kind": "pbx", "item": call}]
    assert intake.counters(redis_client) == {"accepted": 1, "calls": 2, "dropped:duplicate": 1}
