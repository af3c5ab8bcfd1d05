"""Two clocks run; the leader is SIGKILLed, or stalled (SIGSTOP) and later resumed. The other
takes over: the subscription renewal that falls due is made, there is still exactly one
subscription, and every user converges."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 40
TAKEOVER_WITHIN = 75.0  # the leader lock lives 30 s; then the next reconcile renews


@pytest.mark.parametrize("how", ["killed", "stalled"])
def test_clock_leader_lost_under_load_is_replaced(chaos_site: SiteFactory, how: str) -> None:
    site = chaos_site(clocks=1)
    leader = site.clocks[0]  # the first clock made the subscription: it leads
    site.start_clock()
    site.load.wait_changes(WARM_UP)
    began, started = time.monotonic(), time.time()
    if how == "killed":
        leader.kill()
    else:
        leader.pause()
    try:
        site.make_renewal_due()
        wait_until(lambda: site.renewed_since(started), "the other clock to renew",
                   TAKEOVER_WITHIN)  # fmt: skip
    finally:
        if how == "stalled":
            leader.resume()  # wakes believing it still leads
    figures = Figures(f"clock-leader-{how}", fault_seconds=time.monotonic() - began)
    figures.notes["renewed_by_the_other_after_s"] = round(time.monotonic() - began, 1)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
    assert len(site.live_subscriptions()) == 1
