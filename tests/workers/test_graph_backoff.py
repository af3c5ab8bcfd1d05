"""Graph's throttling is shared by every worker: a 429 with Retry-After seen by one job holds
every job's Graph calls for that app until the time, and no worker sleeps on it. The Graph
emulator with an injected throttle, real msal, real RQ workers on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from core.queue import QUEUE_DEFAULT, QUEUES, JobSpec, queue
from core.state import backoff, links
from core.state.pbx import builtin_profile
from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.core.conftest import Site, make_site
from tests.emulator.conftest import control, emulator  # noqa: F401 - fixtures
from workers.runtime import WorkerRuntime, install

T = "contoso"
READ = "getPresencesByUserId$"
# Presence notifications come through the forwarder as this job; here, one job per worker.
NOTIFICATIONS = JobSpec("notifications", "workers.jobs.process_notifications", QUEUE_DEFAULT)


@pytest.fixture
def site(
    emulator: EmulatorServer,  # noqa: F811 - the fixture imported above
    control: ControlClient,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    redis_url: str,
) -> Iterator[Site]:
    site = make_site(emulator, control, tmp_path, redis_url)
    yield site
    control.request("DELETE", "/faults")


@pytest.fixture
def users(site: Site, redis_client: redis.Redis) -> list[str]:
    """Two Teams users in a call, linked to PBX users p0 and p1."""
    ids = site.control.seed_users(site.tenant_id, count=2, prefix=f"u{time.monotonic_ns()}")
    site.control.request("POST", "/presence", {"userIds": ids, "availability": "Busy",
                                               "activity": "InACall"})  # fmt: skip
    links.replace(redis_client, T, {gid: [f"p{n}"] for n, gid in enumerate(ids)})
    return ids


def workers(site: Site, redis_client: redis.Redis, count: int) -> list[WorkerRuntime]:
    """Runtimes of separate worker processes: each its own Graph client and token."""
    return [WorkerRuntime(site.settings, redis_client) for _ in range(count)]


def throttle(site: Site, seconds: int) -> None:
    """Graph throttles presence reads until told otherwise (the count only counts them)."""
    spec = {"kind": "throttle", "path": READ, "retryAfter": seconds, "count": 1000}
    site.control.request("POST", "/faults/routes", spec)


def reads_throttled(site: Site) -> int:
    faults = site.control.request("GET", "/faults")["routes"]
    return sum(1000 - f["remaining"] for f in faults)


def notification(user_id: str) -> dict[str, Any]:
    return {"tenant": T, "kind": "notification",
            "item": {"id": f"n-{time.monotonic_ns()}", "userId": user_id}}  # fmt: skip


def run_as(runtime: WorkerRuntime, client: redis.Redis, scheduler: bool = False) -> None:
    install(runtime)
    try:
        q = [queue(client, name) for name in (*QUEUES,)]
        SimpleWorker(q, connection=client, serializer=JSONSerializer).work(
            burst=True, with_scheduler=scheduler
        )
    finally:
        install(None)


def scheduled(client: redis.Redis) -> dict[str, float]:
    registry = queue(client, QUEUE_DEFAULT).scheduled_job_registry
    return {j: registry.get_scheduled_time(j).timestamp() for j in registry.get_job_ids()}


def test_a_throttle_seen_by_one_worker_holds_the_others_until_its_time(
    site: Site, users: list[str], redis_client: redis.Redis
) -> None:
    first, second = workers(site, redis_client, 2)
    throttle(site, 120)
    before = time.time()
    for runtime, user in ((first, users[0]), (second, users[1])):
        NOTIFICATIONS.enqueue(redis_client, T, [notification(user)])
        run_as(runtime, redis_client)
    assert reads_throttled(site) == 1  # the second worker did not ask, nor did the first again
    due = scheduled(redis_client)
    assert len(due) == 2 and all(at >= before + 119 for at in due.values())
    assert queue(redis_client, QUEUE_DEFAULT).failed_job_registry.count == 0
    for runtime in (first, second):
        runtime.close()


def test_waiting_for_graph_costs_a_job_none_of_its_retries(
    site: Site, users: list[str], redis_client: redis.Redis
) -> None:
    (runtime,) = workers(site, redis_client, 1)
    throttle(site, 120)
    job = NOTIFICATIONS.enqueue(redis_client, T, [notification(users[0])])
    for _ in range(3):  # the retry runs early (the operator requeued it, a scheduler ran)
        run_as(runtime, redis_client)
        queue(redis_client, QUEUE_DEFAULT).scheduled_job_registry.requeue(job.id)
    run_as(runtime, redis_client)
    fetched = Job.fetch(job.id, connection=redis_client, serializer=JSONSerializer)
    assert fetched.retries_left == NOTIFICATIONS.retry.max  # type: ignore[union-attr]
    assert reads_throttled(site) == 1
    runtime.close()


def test_after_the_time_one_read_goes_through_and_the_users_converge(
    site: Site, users: list[str], redis_client: redis.Redis
) -> None:
    first, second = workers(site, redis_client, 2)
    throttle(site, 2)
    for runtime, user in ((first, users[0]), (second, users[1])):
        NOTIFICATIONS.enqueue(redis_client, T, [notification(user)])
        run_as(runtime, redis_client)
    site.control.request("DELETE", "/faults")  # Graph recovers
    deadline = time.monotonic() + 30

    def shown() -> list[object]:
        return [builtin_profile(redis_client, T, u) for u in ("p0", "p1")]

    while any(p is None for p in shown()):
        assert time.monotonic() < deadline, "the users did not converge"
        run_as(first, redis_client, scheduler=True)
        time.sleep(0.05)  # the scheduler's next look; the condition is polled
    assert backoff.graph(redis_client, T, site.client_id).state() is None
    assert queue(redis_client, QUEUE_DEFAULT).failed_job_registry.count == 0
    for runtime in (first, second):
        runtime.close()
