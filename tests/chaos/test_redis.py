"""Redis fails under load: stopped, reset, frozen, half-open, restarted empty.

Each ends with the convergence check: 0 acknowledged changes lost, every PBX profile the
mapping of the user's latest Teams presence within the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

WARM_UP = 40
DURING = 120  # changes made while the fault lasts (about 6 s)


def _resets(site: ChaosSite) -> Callable[[], None]:
    """RST every connection to Redis twice a second until restored."""
    stop = threading.Event()

    def keep_resetting() -> None:
        while not stop.wait(0.5):
            site.redis_proxy.reset()

    thread = threading.Thread(target=keep_resetting, daemon=True)
    thread.start()

    def restore() -> None:
        stop.set()
        thread.join()

    return restore


def _cut(site: ChaosSite) -> Callable[[], None]:
    site.redis_proxy.cut()
    return site.redis_proxy.restore


def _black_hole(site: ChaosSite) -> Callable[[], None]:
    site.redis_proxy.black_hole()
    return site.redis_proxy.restore


def _freeze(site: ChaosSite) -> Callable[[], None]:
    site.freeze_redis()
    return site.thaw_redis


FAULTS: dict[str, Callable[[ChaosSite], Callable[[], None]]] = {
    "stopped": _cut,  # unreachable: connections closed, new ones refused
    "reset": _resets,  # connections reset again and again (a flapping link)
    "frozen": _freeze,  # SIGSTOP: the server holds connections and answers nothing
    "half-open": _black_hole,  # the network drops everything silently
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_redis_fault_under_load_loses_no_acknowledged_change(
    chaos_site: SiteFactory, fault: str
) -> None:
    site = chaos_site()
    figures = site.under_fault(f"redis-{fault}", lambda: FAULTS[fault](site), WARM_UP, DURING)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes


def test_redis_restarted_empty_under_load_converges(chaos_site: SiteFactory) -> None:
    site = chaos_site()
    site.load.wait_changes(WARM_UP)
    began = time.monotonic()
    site.restart_redis_empty()
    figures = Figures("redis-restarted-empty", fault_seconds=time.monotonic() - began)
    site.load.wait_changes(DURING)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
