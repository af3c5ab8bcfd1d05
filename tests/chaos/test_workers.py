"""A worker is SIGKILLed in the middle of a batch of notifications (acknowledged, presence not
read yet): alone (its supervisor starts a new one), or beside a second worker that must take
over what the dead one held."""

from __future__ import annotations

import time

import pytest
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from emulator.harness.processes import Service
from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 40
# Slow presence reads, so a notification batch is inside its read when the kill comes.
READ_LATENCY = {"kind": "latency", "path": "getPresencesByUserId", "latency": 1.0}
BATCH_JOB = "workers.jobs.process_notifications"


def busy_worker(site: ChaosSite) -> Service | None:
    """The worker process running a batch of notifications now, if any."""
    for worker in Worker.all(connection=site.redis):
        job_id = worker.get_current_job_id()
        if job_id is None:
            continue
        job = Job.fetch(job_id, connection=site.redis, serializer=JSONSerializer)
        if job.func_name == BATCH_JOB:
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
    site.site.control.request("POST", "/faults/routes", READ_LATENCY)
    site.load.wait_changes(WARM_UP)
    # No change after this one: a later change of the same user would hide a lost batch.
    site.load.stop()
    victim = wait_until(lambda: busy_worker(site), "a worker in the middle of a batch", 30)
    began = time.monotonic()
    victim.kill()  # SIGKILL: the job, its forwarder's unacked reads, everything in flight
    site.site.control.request("DELETE", "/faults")
    if workers == 1:
        site.start_worker()  # what the process supervisor does
    figures = Figures(f"worker-sigkill-{workers}", fault_seconds=time.monotonic() - began)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
