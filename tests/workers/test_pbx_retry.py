"""A PBX that throttles (429), is unavailable (503) or away is left alone by every job while
its shared back-off lasts, then probed once, then given the rest: a real PBX over loopback,
real RQ workers (with their scheduler) on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core.queue import JOB_DELIVER, QUEUE_PBX, QUEUES, queue
from core.settings import load_settings
from core.state import backoff, delivery, links
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.pbx_server import PbxServer, Recorded
from workers import jobs
from workers.runtime import WorkerRuntime, install

T = "contoso"
USERS = [f"u{n:02}" for n in range(20)]
WRITE = "/generic/users/"


@pytest.fixture
def pbx() -> Iterator[PbxServer]:
    with PbxServer() as server:
        yield server


@pytest.fixture
def runtime(
    pbx: PbxServer, tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[WorkerRuntime]:
    options = (f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{pbx.url}"\n'
               '[tenants.pbx.options.actions.apply_profile]\n'
               f'url = "{WRITE}$user"\nmethod = "PUT"\n')  # fmt: skip
    env = write_env(tmp_path, tenant_toml(pbx=options), PRESENCE_BRIDGE_REDIS_URL=redis_url,
                    **{secret_env(T, "CLIENT_SECRET"): "s"})  # fmt: skip
    runtime = WorkerRuntime(load_settings(env), redis_client)
    install(runtime)
    links.replace(redis_client, T, {f"g-{u}": [u] for u in USERS})
    yield runtime
    install(None)
    runtime.close()


def teams_changes(users: list[str] = USERS, availability: str = "Away") -> None:
    """Each user's presence changes: one presence job per user, as notifications come."""
    for user in users:
        presence = {"id": f"g-{user}", "availability": availability, "activity": availability}
        jobs.process_presences(T, [{**presence, "observedAt": time.time()}])


def writes(pbx: PbxServer) -> list[Recorded]:
    return [r for r in pbx.requests if r.path.startswith(WRITE)]


def run_workers(client: redis.Redis, done: Callable[[], bool], within: float = 60.0) -> None:
    """Real RQ workers with their scheduler (which queues a retry when it is due), until
    `done` or the deadline."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "the users did not converge in time"
        worker = SimpleWorker([queue(client, q) for q in QUEUES], connection=client,
                              serializer=JSONSerializer)  # fmt: skip
        worker.work(burst=True, with_scheduler=True)
        time.sleep(0.05)  # the scheduler's next look; the condition is polled


def converged(client: redis.Redis) -> Callable[[], bool]:
    return lambda: not delivery.pending_users(client, T)


def nothing_lost(client: redis.Redis) -> tuple[int, int]:
    """(RQ's failed jobs, dead letters)"""
    failed = sum(queue(client, q).failed_job_registry.count for q in QUEUES)
    return failed, len(delivery.dead_letters(client, T))


def test_no_request_before_the_retry_after_then_one_probe_then_the_rest(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(2, 503, retry_after="2")  # the first write, and the first probe
    teams_changes()
    run_workers(redis_client, converged(redis_client))
    sent = writes(pbx)
    first, probe, *rest = sent
    assert probe.at >= first.at + 2  # nobody asked sooner, on any job
    assert rest[0].at >= probe.at + 2  # the failed probe was the only request meanwhile
    assert sorted(r.path.removeprefix(WRITE) for r in rest) == USERS  # once each
    assert nothing_lost(redis_client) == (0, 0)


def test_without_retry_after_the_probes_grow_apart_and_stay_few(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    back = pbx.down(5, 503)
    teams_changes()
    run_workers(redis_client, converged(redis_client))
    refused = [r for r in writes(pbx) if r.at < back]
    gaps = [b.at - a.at for a, b in zip(refused, refused[1:], strict=False)]
    # Each wait is at least half its step, and the step doubles: 1 s, 2 s, 4 s, ...
    assert all(gap >= backoff.BASE_SECONDS * 2**n / 2 for n, gap in enumerate(gaps))
    assert len(refused) <= 5  # 20 users, 5 s of outage
    assert len(writes(pbx)) == len(refused) + len(USERS)
    assert nothing_lost(redis_client) == (0, 0)


def test_while_the_pbx_backs_off_nothing_is_sent_lost_or_dead_lettered(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 429, retry_after="120")
    teams_changes()
    teams_changes(USERS[:5], "Busy")  # more changes meanwhile
    for _ in range(3):  # the clock's PBX round, and retries that run early, find it closed
        jobs.maintain_pbx(T)
        jobs.deliver_pending(T)
    assert len(writes(pbx)) == 1
    assert sorted(delivery.pending_users(redis_client, T)) == USERS
    assert nothing_lost(redis_client) == (0, 0)
    registry = queue(redis_client, QUEUE_PBX).scheduled_job_registry
    [job_id] = registry.get_job_ids()  # one resumption for every deferred user
    assert registry.get_scheduled_time(job_id).timestamp() >= pbx.requests[0].at + 119
    assert queue(redis_client, QUEUE_PBX).count == 0


def test_the_resumption_delivers_every_pending_user(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 503, retry_after="1")
    teams_changes()
    [job] = queue(redis_client, QUEUE_PBX).scheduled_job_registry.get_job_ids()
    scheduled = queue(redis_client, QUEUE_PBX).fetch_job(job)
    assert scheduled is not None and (scheduled.func_name, list(scheduled.args)) == (
        JOB_DELIVER,
        [T],
    )
    run_workers(redis_client, converged(redis_client))
    assert len(writes(pbx)) == 1 + len(USERS)


def test_a_refused_write_does_not_make_the_pbx_back_off(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 500)  # one write fails; the PBX as a whole answers
    teams_changes()
    assert backoff.pbx(redis_client, T).state() is None
    assert len(writes(pbx)) == len(USERS)
    [job] = queue(redis_client, QUEUE_PBX).jobs  # that user's own retry
    assert (job.func_name, list(job.args)) == (JOB_DELIVER, [T, [USERS[0]]])
