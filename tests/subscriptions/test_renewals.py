"""Renewals that fail are owed and retried until the subscription's window closes.

Graph's answers come from the emulator's fault switches; time is the emulator's clock, which
the tests move on instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.errors import GraphError
from core.state import subscriptions as sub_state
from subscriptions import lifecycle
from subscriptions.reconcile import BACKOFF_BASE_SECONDS, OWED_RETRY_MIN_SECONDS, backoff_delay
from subscriptions.schedules import Clockwork
from tests.subscriptions.conftest import TENANT, Bridge
from tests.subscriptions.test_lifecycle import deliver

RETRY_AFTER_SECONDS = 40


def clockwork(bridge: Bridge) -> Clockwork:
    return Clockwork(
        bridge.settings, bridge.redis, bridge.auth, now=bridge.emulator.world.clock.now
    )


def fail_patches(bridge: Bridge, spec: dict[str, object]) -> None:
    """The next PATCHes of a subscription fail as `spec` says (one fault switch)."""
    fault = {"path": "/subscriptions/", "method": "PATCH", **spec}
    bridge.control.request("POST", "/faults/routes", fault)


def reauthorization_fails(bridge: Bridge, work: Clockwork) -> str:
    """Subscribe, have Graph ask for reauthorization, and throttle the first PATCH (429).

    The later PATCHes then fail once with a 500, then succeed. Returns the subscription id.
    """
    work.reconcile(work.context(bridge.tenant))
    (sub,) = bridge.live()
    bridge.control.advance_clock(10 * 60)  # 49 minutes left: the reconcile would not renew yet
    fail_patches(bridge, {"kind": "throttle", "retryAfter": RETRY_AFTER_SECONDS, "count": 1})
    fail_patches(bridge, {"kind": "error", "status": 500, "count": 1})
    deliver(bridge, sub.id, "reauthorizationRequired")
    report = lifecycle.drain(work.context(bridge.tenant))
    assert report.renewed == [] and report.failed  # the 429
    return sub.id


def wait_out_backoff(bridge: Bridge, account: str) -> None:
    entry = sub_state.backoff(bridge.redis, TENANT, account)
    assert entry is not None
    bridge.control.advance_clock(entry.until - bridge.emulator.world.clock.now() + 1)


def test_a_renewal_throttled_then_failing_is_retried_until_it_succeeds(
    bridge_factory: Callable[..., Bridge],
    clockwork_factory: Callable[[Bridge], Clockwork],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    work = clockwork_factory(bridge)
    sid = reauthorization_fails(bridge, work)
    (account,) = bridge.accounts
    for _ in range(2):  # the 500, then the renewal that succeeds
        wait_out_backoff(bridge, account)
        work.renewals_all()

    (after,) = bridge.live()
    assert after.id == sid
    assert after.expiration - bridge.emulator.world.clock.now() > 55 * 60
    assert sub_state.owed_renewals(bridge.redis, TENANT) == {}
    assert sub_state.backoff(bridge.redis, TENANT, account) is None


def test_a_throttle_waits_its_retry_after_and_does_not_grow_the_5xx_backoff(
    bridge_factory: Callable[..., Bridge],
    clockwork_factory: Callable[[Bridge], Clockwork],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    work = clockwork_factory(bridge)
    reauthorization_fails(bridge, work)
    (account,) = bridge.accounts
    throttled = sub_state.backoff(bridge.redis, TENANT, account)
    assert throttled is not None and throttled.throttled and throttled.failures == 0
    # The emulated clock runs on in real time too: a second of slack.
    left = throttled.until - bridge.emulator.world.clock.now()
    assert left == pytest.approx(RETRY_AFTER_SECONDS, abs=1.0)

    work.renewals_all()  # still inside the Retry-After: not tried
    wait_out_backoff(bridge, account)
    work.renewals_all()  # the 500

    failed = sub_state.backoff(bridge.redis, TENANT, account)
    assert failed is not None and failed.failures == 1 and not failed.throttled
    left = failed.until - bridge.emulator.world.clock.now()
    assert left == pytest.approx(BACKOFF_BASE_SECONDS, abs=1.0)  # the first step, not the second


def test_an_owed_renewal_is_tried_until_its_subscription_expires(
    bridge_factory: Callable[..., Bridge],
    clockwork_factory: Callable[[Bridge], Clockwork],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    work = clockwork_factory(bridge)
    work.reconcile(work.context(bridge.tenant))
    (sub,) = bridge.live()
    fail_patches(bridge, {"kind": "error", "status": 500})  # every PATCH, until removed
    bridge.control.advance_clock(45 * 60)  # 14 minutes left: the reconcile renews
    work.reconcile_all()
    (account,) = bridge.accounts
    attempts = [bridge.emulator.world.clock.now()]
    while sub_state.owed_renewals(bridge.redis, TENANT):
        wait_out_backoff(bridge, account)
        if bridge.emulator.world.clock.now() >= sub.expiration:
            break
        work.renewals_all()
        attempts.append(bridge.emulator.world.clock.now())

    # Each wait is at most half of what was left, so the last try comes in the final seconds.
    assert sub.expiration - attempts[-1] <= 2 * OWED_RETRY_MIN_SECONDS + 1
    assert len(attempts) > 5


@pytest.mark.parametrize(
    ("status", "retry_after", "failures", "left", "expected"),
    [
        (429, 7.0, 4, None, (7.0, True)),  # Retry-After only, whatever came before
        (429, None, 0, None, (60.0, True)),  # a 429 without one
        (503, None, 0, None, (30.0, False)),
        (503, None, 3, None, (240.0, False)),
        (503, None, 9, None, (900.0, False)),  # the cap
        (503, None, 9, 300.0, (150.0, False)),  # an owed renewal: half of what is left
        (503, None, 9, 4.0, (OWED_RETRY_MIN_SECONDS, False)),
        (503, 200.0, 9, 300.0, (200.0, False)),  # never before its Retry-After
    ],
)
def test_backoff_delay(
    status: int,
    retry_after: float | None,
    failures: int,
    left: float | None,
    expected: tuple[float, bool],
) -> None:
    error = GraphError(status, "code", "message", retry_after=retry_after)
    assert backoff_delay(error, failures, left) == expected
