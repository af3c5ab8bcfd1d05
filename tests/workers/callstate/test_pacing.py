"""Pacing: the token bucket (a steady rate after a burst) and the due queue, on test clocks."""

from __future__ import annotations

import pytest

from workers.callstate.pacing import DueQueue, TokenBucket


def test_a_burst_goes_at_once_then_the_rest_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0)
    waits = [bucket.take(0) for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_ten_thousand_subscribes_at_fifty_a_second_take_two_hundred_seconds() -> None:
    bucket = TokenBucket(rate=50, burst=50, now=0)
    last = max(bucket.take(0) for _ in range(10_000))
    assert last == pytest.approx((10_000 - 50) / 50)


def test_a_quiet_spell_refills_up_to_the_burst_only() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0)
    assert [bucket.take(0), bucket.take(0)] == [0, 0]
    assert bucket.take(100) == 0
    assert bucket.take(100) == 0
    assert bucket.take(100) == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_nonsense_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate, burst, now=0)


def test_a_due_queue_hands_out_what_is_due_in_time_order() -> None:
    due = DueQueue()
    due.plan("b", 2)
    due.plan("a", 1)
    assert due.pop_due(0.5) is None
    assert [due.pop_due(5), due.pop_due(5), due.pop_due(5)] == ["a", "b", None]


def test_planning_again_replaces_the_plan() -> None:
    due = DueQueue()
    due.plan("a", 1)
    due.plan("a", 10)
    assert due.planned("a") == 10
    assert due.pop_due(5) is None
    assert due.pop_due(10) == "a" and due.planned("a") is None
