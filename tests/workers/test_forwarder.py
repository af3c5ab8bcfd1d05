from __future__ import annotations

from typing import Any, cast

import orjson
import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core.queue import JOB_LIFECYCLE, QUEUE_LIFECYCLE, QUEUE_PRESENCE, queue
from core.settings import load_settings
from core.state import intake
from emulator.harness.redis_server import StreamEntries
from workers.forwarder import IntakeForwarder
from workers.runtime import WorkerRuntime, install


def append(client: redis.Redis, entries: list[intake.Accepted]) -> None:
    script = client.register_script(intake.APPEND_SCRIPT)
    script(keys=[intake.STREAM, intake.METRICS], args=intake.script_args(entries, {}))


def notification(tenant: str, user: str, n: int) -> intake.Accepted:
    item = {"subscriptionId": "s", "userId": user, "id": f"{user}-{n}"}
    return intake.Accepted(tenant=tenant, kind="notification", item=item)


def forwarder(client: redis.Redis, name: str = "w1") -> IntakeForwarder:
    f = IntakeForwarder(client, name)
    f.ensure_group()
    return f


def test_entries_become_rq_jobs_per_tenant_and_kind(redis_client: redis.Redis) -> None:
    f = forwarder(redis_client)
    append(redis_client, [notification("a", "u1", 1), notification("b", "u2", 1)])
    lifecycle = intake.Accepted(
        "a", "lifecycle", {"subscriptionId": "s", "lifecycleEvent": "missed"}
    )
    append(redis_client, [lifecycle])
    assert f.run_once(block_ms=10) == 3
    assert (
        queue(redis_client, QUEUE_PRESENCE).count,
        redis_client.llen(intake.lifecycle_inbox("a")),  # no job: straight to the clock
    ) == (2, 1)


def test_lifecycle_items_reach_the_clock_without_a_job(redis_client: redis.Redis) -> None:
    f = forwarder(redis_client)
    lifecycle = intake.Accepted(
        "contoso", "lifecycle", {"subscriptionId": "s", "lifecycleEvent": "missed"}
    )
    append(redis_client, [lifecycle])
    f.run_once(block_ms=10)
    [item] = intake.take_lifecycle(redis_client, "contoso", 10)
    assert (item["lifecycleEvent"], queue(redis_client, QUEUE_LIFECYCLE).count) == ("missed", 0)
    assert redis_client.xlen(intake.notification_log("contoso")) == 1


def test_forwarded_entries_leave_the_stream(redis_client: redis.Redis) -> None:
    f = forwarder(redis_client)
    append(redis_client, [notification("a", "u1", 1)])
    f.run_once(block_ms=10)
    assert redis_client.xlen(intake.STREAM) == 0


def test_a_job_carries_many_items(redis_client: redis.Redis) -> None:
    f = forwarder(redis_client)
    append(redis_client, [notification("a", f"u{n}", n) for n in range(150)])
    f.run_once(block_ms=10)
    [job] = queue(redis_client, QUEUE_PRESENCE).jobs
    assert len(job.args[1]) == 150


def test_entry_read_by_a_dead_worker_is_claimed_by_another(redis_client: redis.Redis) -> None:
    dead = forwarder(redis_client, "dead")
    append(redis_client, [notification("a", "u1", 1)])
    redis_client.xreadgroup(intake.GROUP, "dead", {intake.STREAM: ">"}, count=10)
    del dead  # read but never forwarded
    survivor = IntakeForwarder(redis_client, "alive")
    # Age the pending entry past the claim threshold instead of waiting a minute.
    [[_, entries]] = cast(
        list[list[Any]],
        redis_client.xreadgroup(intake.GROUP, "dead", {intake.STREAM: "0"}, count=10),
    )
    entry_id = entries[0][0]
    redis_client.xclaim(intake.STREAM, intake.GROUP, "dead", 0, [entry_id], idle=10 * 60_000)
    assert survivor.run_once(block_ms=10) == 1


def test_a_lifecycle_job_of_an_earlier_version_still_reaches_the_clock(
    redis_client: redis.Redis, redis_url: str
) -> None:
    install(WorkerRuntime(load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url}), redis_client))
    lifecycle = intake.Accepted(
        "contoso", "lifecycle", {"subscriptionId": "s", "lifecycleEvent": "missed"}
    )
    queue(redis_client, QUEUE_LIFECYCLE).enqueue(
        JOB_LIFECYCLE, "contoso", [orjson.loads(lifecycle.to_bytes())]
    )
    worker = SimpleWorker(
        [queue(redis_client, QUEUE_LIFECYCLE)], connection=redis_client, serializer=JSONSerializer
    )
    worker.work(burst=True)
    install(None)
    [raw] = redis_client.lrange(intake.lifecycle_inbox("contoso"), 0, -1)
    assert orjson.loads(raw)["lifecycleEvent"] == "missed"


def test_coalescing_window_gathers_entries_of_a_burst(redis_client: redis.Redis) -> None:
    f = IntakeForwarder(redis_client, "w1", window_ms=50)
    f.ensure_group()
    append(redis_client, [notification("a", "u1", 1)])
    append(redis_client, [notification("a", "u2", 1)])
    assert f.run_once(block_ms=10) == 2
    [job] = queue(redis_client, QUEUE_PRESENCE).jobs
    assert len(job.args[1]) == 2


def test_stream_entry_round_trips(redis_client: redis.Redis) -> None:
    append(redis_client, [notification("a", "u1", 1)])
    [(_, fields)] = cast(StreamEntries, redis_client.xrange(intake.STREAM))
    assert intake.decode_entry(fields) == [orjson.loads(notification("a", "u1", 1).to_bytes())]
