"""The shared back-off record of a peer, on a real Redis, with the bridge's clock moved by hand."""

from __future__ import annotations

import random

import pytest
import redis

from core.state import backoff
from core.state.backoff import Backoff, Gate

T = "contoso"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def peer(client: redis.Redis, clock: Clock, seed: int = 1) -> Backoff:
    """One worker's handle on the tenant's PBX record."""
    return Backoff(client, T, backoff.PBX, clock=clock, rng=random.Random(seed))


def test_a_peer_without_a_record_may_be_called(redis_client: redis.Redis, clock: Clock) -> None:
    assert peer(redis_client, clock).gate() == Gate(True)


def test_nobody_calls_before_the_retry_after(redis_client: redis.Redis, clock: Clock) -> None:
    until = peer(redis_client, clock).failed(503, 30.0, "503")
    clock.now += 29.9
    assert peer(redis_client, clock, seed=2).gate() == Gate(False, until=until)


def test_after_the_time_one_caller_probes_and_the_others_wait(
    redis_client: redis.Redis, clock: Clock
) -> None:
    peer(redis_client, clock).failed(429, 30.0, "429")
    clock.now += 30
    first, second = peer(redis_client, clock), peer(redis_client, clock, seed=2)
    assert first.gate().probe
    assert second.gate() == Gate(False, until=clock.now + backoff.PROBE_WAIT_SECONDS)


def test_the_probes_success_lets_everyone_call(redis_client: redis.Redis, clock: Clock) -> None:
    peer(redis_client, clock).failed(503, 5.0, "503")
    clock.now += 5
    prober = peer(redis_client, clock)
    assert prober.gate().probe
    assert prober.succeeded() is True
    assert peer(redis_client, clock, seed=2).gate() == Gate(True)
    assert prober.succeeded() is False  # nothing left to clear


def test_without_retry_after_each_failed_probe_doubles_the_step(
    redis_client: redis.Redis, clock: Clock
) -> None:
    shared = peer(redis_client, clock)
    waits = []
    for _ in range(12):
        until = shared.failed(None, None, "unreachable")
        waits.append(until - clock.now)
        clock.now = until
        assert shared.gate().probe
    steps = [min(backoff.MAX_SECONDS, backoff.BASE_SECONDS * 2**n) for n in range(12)]
    assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))
    assert max(waits) <= backoff.MAX_SECONDS


def test_a_failure_from_a_call_already_in_flight_counts_once(
    redis_client: redis.Redis, clock: Clock
) -> None:
    until = peer(redis_client, clock).failed(503, None, "503")
    assert peer(redis_client, clock, seed=2).failed(503, None, "503") == until
    state = peer(redis_client, clock).state()
    assert state is not None and state.failures == 1


def test_a_later_retry_after_from_a_call_in_flight_is_honoured(
    redis_client: redis.Redis, clock: Clock
) -> None:
    peer(redis_client, clock).failed(503, 10.0, "503")
    assert peer(redis_client, clock, seed=2).failed(429, 60.0, "429") == clock.now + 60


def test_a_long_retry_after_is_capped(redis_client: redis.Redis, clock: Clock) -> None:
    until = peer(redis_client, clock).failed(429, 86_400.0, "429")
    assert until == clock.now + backoff.MAX_RETRY_AFTER_SECONDS


def test_many_deferred_callers_schedule_one_resumption(
    redis_client: redis.Redis, clock: Clock
) -> None:
    until = peer(redis_client, clock).failed(503, 30.0, "503")
    claims = [peer(redis_client, clock, seed=n).claim_resume(until) for n in range(5)]
    assert claims == [True, False, False, False, False]
    clock.now = until  # the resumption runs, finds the PBX refusing again
    later = peer(redis_client, clock).failed(503, 30.0, "503")
    assert peer(redis_client, clock).claim_resume(later) is True


def test_the_record_says_who_backs_off_why_and_until_when(
    redis_client: redis.Redis, clock: Clock
) -> None:
    graph = backoff.graph(redis_client, T, "app-1")
    Backoff(redis_client, T, graph.peer, clock=clock).failed(429, 120.0, "429 TooManyRequests")
    [state] = backoff.backing_off(redis_client, T, [backoff.PBX, graph.peer])
    assert (state.what, state.status, state.failures, state.until, state.reason) == (
        "Graph app app-1",
        429,
        1,
        clock.now + 120,
        "429 TooManyRequests",
    )
