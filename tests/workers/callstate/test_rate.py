"""TokenBucket: a steady pace after a burst, on a clock the test moves."""

from __future__ import annotations

import pytest

from workers.callstate.rate import TokenBucket


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
