"""A worker is SIGKILLed in the middle of a batch: alone (its supervisor starts a new one), or
beside a second worker that must take over what the dead one held."""

from __future__ import annotations

import time

import pytest
from rq import Worker

from emulator.harness.processes import Service
from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 40
PBX_LATENCY = 0.3  # slow PBX writes, so a batch is still running when the kill comes


def busy_worker(site: ChaosSite) -> Service | None:
    """The worker process running a job now, if any."""
    for worker in Worker.all(connection=site.redis):
        if worker.get_current_job_id() is not None:
            for service in site.workers:
                if service.proc.pid == worker.pid and service.proc.poll() is None:
                    return service
    return None


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_worker_killed_mid_batch_loses_no_acknowledged_change(
    chaos_site: SiteFactory, workers: int
) -> None:
    site = chaos_site(workers=workers)
    site.load.wait_changes(WARM_UP)
    site.pbx_proxy.latency(PBX_LATENCY)
    victim = wait_until(lambda: busy_worker(site), "a worker in the middle of a job", 30)
    began = time.monotonic()
    victim.kill()  # SIGKILL: the job, its forwarder's unacked reads, everything in flight
    site.pbx_proxy.restore()
    if workers == 1:
        site.start_worker()  # what the process supervisor does
    figures = Figures(f"worker-sigkill-{workers}", fault_seconds=time.monotonic() - began)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
