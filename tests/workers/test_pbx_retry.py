"""A PBX that answers 429/503 with Retry-After is asked again only after that wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from core.queue import QUEUE_PBX, queue
from core.settings import load_settings
from core.state import links
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.pbx_server import PbxServer
from workers import jobs
from workers.runtime import WorkerRuntime, install


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
               'url = "/generic/users/$user"\nmethod = "PUT"\n')  # fmt: skip
    env = write_env(tmp_path, tenant_toml(pbx=options), PRESENCE_BRIDGE_REDIS_URL=redis_url,
                    **{secret_env("contoso", "CLIENT_SECRET"): "s"})  # fmt: skip
    runtime = WorkerRuntime(load_settings(env), redis_client)
    install(runtime)
    links.replace(redis_client, "contoso", {"g-alice": ["alice"]})
    yield runtime
    install(None)
    runtime.close()


def test_retry_after_from_the_pbx_delays_the_retry(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 429, retry_after="120")
    before = time.time()
    jobs.process_presences(
        "contoso",
        [{"id": "g-alice", "availability": "Away", "activity": "Away", "observedAt": before}],
    )
    registry = ScheduledJobRegistry(queue=queue(redis_client, QUEUE_PBX))  # type: ignore[no-untyped-call]
    [job_id] = registry.get_job_ids()
    due = registry.get_scheduled_time(job_id).timestamp()
    assert before + 115 <= due <= time.time() + 125
    assert queue(redis_client, QUEUE_PBX).count == 0  # nothing retried sooner


def test_a_failure_without_retry_after_is_retried_by_a_queued_job(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 503)
    jobs.process_presences(
        "contoso",
        [{"id": "g-alice", "availability": "Away", "activity": "Away", "observedAt": time.time()}],
    )
    [job] = queue(redis_client, QUEUE_PBX).jobs
    assert (job.func_name, list(job.args)) == (
        "workers.jobs.deliver_pending",
        ["contoso", ["alice"]],
    )


def test_a_retried_delivery_waits_for_the_pbx_retry_after(
    pbx: PbxServer, runtime: WorkerRuntime, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 503)  # the first try, in the presence job: a delivery job is queued
    jobs.process_presences(
        "contoso",
        [{"id": "g-alice", "availability": "Away", "activity": "Away", "observedAt": time.time()}],
    )
    pbx.fail(1, 429, retry_after="300")  # the delivery job's try: RQ retries it, when asked
    before = time.time()
    q = queue(redis_client, QUEUE_PBX)
    SimpleWorker([q], connection=redis_client, serializer=JSONSerializer).work(burst=True)
    registry = q.scheduled_job_registry
    [job_id] = registry.get_job_ids()
    due = registry.get_scheduled_time(job_id).timestamp()
    assert before + 295 <= due <= time.time() + 301
    assert (q.count, q.failed_job_registry.count) == (0, 0)
