"""A worker is SIGKILLed in the middle of a batch of notifications (acknowledged, presence not
read yet): alone (its supervisor starts a new one), or beside a second worker that must take
over what the dead one held."""

from __future__ import annotations

import time

import pytest
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from core.queue import QUEUE_PRESENCE, queue
from core.state import intake
from emulator.delivery import engine_for
from emulator.harness.processes import Service
from emulator.scenario import PAIR_OF, Action, Kind
from tests.chaos.conftest import SiteFactory
from tests.chaos.site import ChaosSite, Figures, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

WARM_UP = 40
# Slow presence reads, so a notification batch is inside its read when the kill comes: a
# batch started less than KILL_WITHIN ago has not had its answer yet.
READ_LATENCY = {"kind": "latency", "path": "getPresencesByUserId", "latency": 2.0}
KILL_WITHIN = 1.0
BATCH_JOB = "workers.jobs.process_notifications"


def busy_worker(site: ChaosSite) -> Service | None:
    """The worker process inside the presence read of a batch of notifications, if any."""
    for worker in Worker.all(connection=site.redis):
        job_id = worker.get_current_job_id()
        if job_id is None:
            continue
        job = Job.fetch(job_id, connection=site.redis, serializer=JSONSerializer)
        started = job.started_at.timestamp() if job.started_at else 0.0
        if job.func_name == BATCH_JOB and time.time() - started < KILL_WITHIN:
            for service in site.workers:
                if service.proc.pid == worker.pid and service.proc.poll() is None:
                    return service
    return None


def last_batch_running(site: ChaosSite) -> Service | None:
    """The worker running a batch of notifications while no other batch waits behind it."""
    if engine_for(site.emulator.world).busy():  # Graph still has some to post
        return None
    if queue(site.redis, QUEUE_PRESENCE).count or intake.depth(site.redis)[0]:
        return None
    return busy_worker(site)


def final_burst(site: ChaosSite) -> None:
    """One last change for every user, each to a profile they do not show now."""
    for graph_id in site.site.graph_ids:
        pair = site.teams_pair(graph_id)
        kind = Kind.BACK if pair == PAIR_OF[Kind.DO_NOT_DISTURB] else Kind.DO_NOT_DISTURB
        site.load.apply(Action(0.0, graph_id, kind, *PAIR_OF[kind]))


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_worker_killed_mid_batch_loses_no_acknowledged_change(
    chaos_site: SiteFactory, workers: int
) -> None:
    site = chaos_site(workers=workers)
    site.load.wait_changes(WARM_UP)
    site.load.stop()
    wait_until(lambda: not site.behind(), "the office day so far to be applied", 60)
    site.site.control.request("POST", "/faults/routes", READ_LATENCY)
    # Each user's last change: a batch killed now has no later change to hide behind.
    final_burst(site)
    victim = wait_until(lambda: last_batch_running(site), "the last batch to be running", 60)
    began = time.monotonic()
    victim.kill()  # SIGKILL: the job, its forwarder's unacked reads, everything in flight
    site.site.control.request("DELETE", "/faults")
    if workers == 1:
        site.start_worker()  # what the process supervisor does
    figures = Figures(f"worker-sigkill-{workers}", fault_seconds=time.monotonic() - began)
    figures = site.converge(figures)
    assert figures.lost == 0, figures.notes
    assert figures.converge_seconds is not None, figures.notes
