"""The PBX fails under load: down (refuses connections), slow (answers after the adapter's
timeout), or answering 503 with Retry-After. Every change made meanwhile reaches it after."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import PBX_TIMEOUT_SECONDS, ChaosSite

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

WARM_UP = 40
DURING = 120  # changes made while the fault lasts (about 6 s)
RETRY_AFTER = "3"
# The http adapter's default pool: at most this many writes are in flight when the first 503
# answers; after it, the PBX said when to come back and is not asked sooner.
IN_FLIGHT = 10


def _down(site: ChaosSite) -> Callable[[], None]:
    site.pbx_proxy.cut()
    return site.pbx_proxy.restore


def _slow(site: ChaosSite) -> Callable[[], None]:
    # Each way, so an answer comes after the adapter has given up: the write may have landed.
    site.pbx_proxy.latency(PBX_TIMEOUT_SECONDS * 0.75)
    return site.pbx_proxy.restore


def _unavailable(site: ChaosSite) -> Callable[[], None]:
    site.pbx.fail(100_000, 503, RETRY_AFTER)
    return site.pbx.clear_faults


FAULTS: dict[str, Callable[[ChaosSite], Callable[[], None]]] = {
    "down": _down,
    "slow": _slow,
    "503-retry-after": _unavailable,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_pbx_fault_under_load_ends_in_the_latest_profiles(
    chaos_site: SiteFactory, fault: str
) -> None:
    site = chaos_site()
    requests_before: list[int] = []

    def inject() -> Callable[[], None]:
        requests_before.append(len(site.pbx.requests))
        return FAULTS[fault](site)

    figures = site.under_fault(f"pbx-{fault}", inject, WARM_UP, DURING)
    asked = len(site.pbx.requests) - requests_before[0]
    figures.notes["pbx_requests_during_fault"] = asked
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
    if fault == "503-retry-after":
        windows = figures.fault_seconds / float(RETRY_AFTER) + 1
        assert asked <= IN_FLIGHT * windows, f"{asked} requests in {figures.fault_seconds} s"
