"""Graph answers 429 (with Retry-After) or 5xx for a while: on the workers' presence reads,
or on the clock's subscription renewal. The bridge waits it out and converges; the renewal
is made once Graph answers again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 60
DURING = 150
AFTER = 60
RENEWED_WITHIN = 90.0  # after the storm; the subscription still has ten minutes to live

STORMS: dict[str, dict[str, Any]] = {
    "429": {"kind": "throttle", "retryAfter": 2},
    "503": {"kind": "error", "status": 503, "retryAfter": 2},
}
TARGETS = {
    "reads": {"path": "getPresencesByUserId"},
    "renewals": {"path": "^/v1.0/subscriptions/", "method": "PATCH"},
}


def storm(site: ChaosSite, storm_kind: str, target: str) -> None:
    site.site.control.request("POST", "/faults/routes", {**STORMS[storm_kind], **TARGETS[target]})


@pytest.mark.parametrize("storm_kind", sorted(STORMS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_graph_storm_under_load_converges(
    chaos_site: SiteFactory, target: str, storm_kind: str
) -> None:
    site = chaos_site()
    site.load.wait_changes(WARM_UP)
    began, started = time.monotonic(), time.time()
    if target == "renewals":
        site.make_renewal_due()
    storm(site, storm_kind, target)
    try:
        site.load.wait_changes(DURING)
    finally:
        site.site.control.request("DELETE", "/faults")
    figures = Figures(f"graph-{storm_kind}-{target}", fault_seconds=time.monotonic() - began)
    if target == "renewals":
        wait_until(lambda: site.renewed_since(started), "the renewal after the storm",
                   RENEWED_WITHIN)  # fmt: skip
        figures.notes["renewed_after_storm_s"] = round(time.monotonic() - began, 1)
    site.load.wait_changes(AFTER)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
    assert len(site.live_subscriptions()) == 1
