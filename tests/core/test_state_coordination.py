"""core.state.coordination: leader locks, heartbeats and the clock's epoch."""

from __future__ import annotations

import time

import pytest
import redis

from core.state import coordination
from core.state.coordination import FenceLost, LeaderLock, Process


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


def _expired(client: redis.Redis, lock: LeaderLock) -> None:
    """Wait until the lock's TTL ran out (Redis expires keys by itself; no event to await)."""
    deadline = time.monotonic() + 5.0
    while client.exists(lock.key):
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.01)


def test_every_new_term_of_a_lock_has_a_higher_fence(redis_client: redis.Redis) -> None:
    first, second = LeaderLock(redis_client, "clock", 0.05), LeaderLock(redis_client, "clock", 30)
    assert first.acquire()
    term = first.fence
    assert first.acquire() and first.fence == term  # kept, not a new term
    _expired(redis_client, first)
    assert second.acquire()
    assert term is not None and second.fence is not None
    assert second.fence.number > term.number


def test_a_write_under_a_term_that_is_over_is_refused(redis_client: redis.Redis) -> None:
    stale, successor = (
        LeaderLock(redis_client, "clock", 0.05),
        LeaderLock(redis_client, "clock", 30),
    )
    assert stale.acquire()
    _expired(redis_client, stale)  # the holder stalled past the TTL...
    assert successor.acquire()  # ...and another process took over
    key = coordination.EPOCH_KEY

    with pytest.raises(FenceLost):
        coordination.fenced(redis_client, stale.fence, lambda pipe: pipe.set(key, "stale"))
    coordination.fenced(redis_client, successor.fence, lambda pipe: pipe.set(key, "successor"))

    assert redis_client.get(key) == b"successor"


def test_a_term_that_expired_untaken_cannot_write_either(redis_client: redis.Redis) -> None:
    lock = LeaderLock(redis_client, "clock", 0.05)
    assert lock.acquire()
    _expired(redis_client, lock)

    with pytest.raises(FenceLost):
        coordination.mark_epoch(redis_client, 1000.0, lock.fence)
    assert coordination.epoch_missing(redis_client)


def test_renewing_keeps_only_the_current_term(redis_client: redis.Redis) -> None:
    lock = LeaderLock(redis_client, "clock", 0.05)
    assert lock.acquire() and lock.renew()
    _expired(redis_client, lock)

    assert not lock.renew()  # over: a new term needs acquire
    assert not redis_client.exists(lock.key)


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
