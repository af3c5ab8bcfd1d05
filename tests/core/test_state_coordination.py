"""core.state.coordination: leader locks, heartbeats and the clock's epoch."""

from __future__ import annotations

import redis

from core.state import coordination
from core.state.coordination import LeaderLock, Process


def test_one_holder_at_a_time_and_release_frees_it(redis_client: redis.Redis) -> None:
    first, second = LeaderLock(redis_client, "clock", 30), LeaderLock(redis_client, "clock", 30)

    assert first.acquire() and first.acquire()  # holding it renews it
    assert not second.acquire()
    second.release()  # not its lock: nothing happens
    assert not second.acquire()
    first.release()
    assert second.acquire()


def test_locks_of_different_names_are_independent(redis_client: redis.Redis) -> None:
    assert LeaderLock(redis_client, "clock", 30).acquire()
    assert LeaderLock(redis_client, "other", 30).acquire()


def test_a_heartbeat_means_alive_until_it_expires(redis_client: redis.Redis) -> None:
    assert not coordination.alive(redis_client, Process.WORKER)
    coordination.beat(redis_client, Process.WORKER, 1000.0, 30)

    pipe = redis_client.pipeline(transaction=False)
    coordination.queue_alive(pipe, Process.WORKER)
    coordination.queue_alive(pipe, Process.CLOCK)
    assert pipe.execute() == [1, 0]
    assert 0 < redis_client.ttl(coordination.heartbeat_key(Process.WORKER)) <= 30


def test_the_epoch_is_set_once_per_redis_lifetime(redis_client: redis.Redis) -> None:
    assert coordination.mark_epoch(redis_client, 1000.0)
    assert not coordination.mark_epoch(redis_client, 2000.0)
    redis_client.flushdb()  # Redis came back empty
    assert coordination.mark_epoch(redis_client, 3000.0)


def test_a_problem_counts_while_fresh(redis_client: redis.Redis) -> None:
    coordination.report_problems(redis_client, Process.WORKER, "w1", ["intake: x"], 1000.0, 30)
    assert (
        coordination.problems(redis_client, Process.WORKER, 1029.0),
        coordination.problems(redis_client, Process.WORKER, 1031.0),  # its worker is gone
    ) == (["w1: intake: x"], [])


def test_reporting_no_problem_clears_only_that_instances_entry(redis_client: redis.Redis) -> None:
    coordination.report_problems(redis_client, Process.WORKER, "w1", ["intake: x"], 1000.0, 30)
    coordination.report_problems(redis_client, Process.WORKER, "w2", ["intake: y"], 1000.0, 30)
    coordination.report_problems(redis_client, Process.WORKER, "w1", [], 1001.0, 30)
    assert coordination.problems(redis_client, Process.WORKER, 1002.0) == ["w2: intake: y"]
