"""Graph answers 429 (with Retry-After), then 503, for a while: on the workers' presence reads,
or on the clock's subscription renewal. The bridge waits it out and converges; the renewal
is made once Graph answers again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 40
DURING = 60  # changes made under each kind of answer: 429 first, then 503 (about 6 s in all)
RENEWED_WITHIN = 90.0  # after the storm; the subscription still has ten minutes to live

STORMS: tuple[dict[str, Any], ...] = (
    {"kind": "throttle", "retryAfter": 2},
    {"kind": "error", "status": 503, "retryAfter": 2},
)
TARGETS = {
    "reads": {"path": "getPresencesByUserId"},
    "renewals": {"path": "^/v1.0/subscriptions/", "method": "PATCH"},
}


def storm(site: ChaosSite, target: str) -> None:
    """Each kind of answer in turn, for DURING changes each."""
    for answer in STORMS:
        site.site.control.request("POST", "/faults/routes", {**answer, **TARGETS[target]})
        try:
            site.load.wait_changes(DURING)
        finally:
            site.site.control.request("DELETE", "/faults")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_graph_storm_under_load_converges(chaos_site: SiteFactory, target: str) -> None:
    site = chaos_site()
    site.load.wait_changes(WARM_UP)
    began, started = time.monotonic(), time.time()
    if target == "renewals":
        site.make_renewal_due()
    storm(site, target)
    figures = Figures(f"graph-storm-{target}", fault_seconds=time.monotonic() - began)
    if target == "renewals":
        wait_until(lambda: site.renewed_since(started), "the renewal after the storm",
                   RENEWED_WITHIN)  # fmt: skip
        figures.notes["renewed_after_storm_s"] = round(time.monotonic() - began, 1)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
    assert len(site.live_subscriptions()) == 1
