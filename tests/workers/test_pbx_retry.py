"""A PBX that answers 429/503 with Retry-After is asked again only after that wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.registry import ScheduledJobRegistry

from core.queue import QUEUE_PBX, queue
from core.settings import load_settings
from core.state import links
from tests.pbx_server import PbxServer
from tests.tenants import secret_env, tenant_toml, write_env
from workers import jobs
from workers.context import WorkerContext, install


@pytest.fixture
def pbx() -> Iterator[PbxServer]:
    with PbxServer() as server:
        yield server


@pytest.fixture
def context(pbx: PbxServer, tmp_path: Path, redis_url: str,
            redis_client: redis.Redis) -> Iterator[WorkerContext]:
    options = (f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{pbx.url}"\n'
               '[tenants.pbx.options.actions.apply_profile]\n'
               'url = "/generic/users/$user"\nmethod = "PUT"\n')  # fmt: skip
    env = write_env(tmp_path, tenant_toml(pbx=options), PRESENCE_BRIDGE_REDIS_URL=redis_url,
                    **{secret_env("contoso", "CLIENT_SECRET"): "s"})  # fmt: skip
    ctx = WorkerContext(load_settings(env), redis_client)
    install(ctx)
    links.replace(redis_client, "contoso", {"g-alice": ["alice"]})
    yield ctx
    install(None)
    ctx.close()


def test_retry_after_from_the_pbx_delays_the_retry(
    pbx: PbxServer, context: WorkerContext, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 429, retry_after="120")
    before = time.time()
    jobs.process_presences("contoso", [{"id": "g-alice", "availability": "Away",
                                        "activity": "Away", "observedAt": before}])
    registry = ScheduledJobRegistry(queue=queue(redis_client, QUEUE_PBX))
    [job_id] = registry.get_job_ids()
    due = registry.get_scheduled_time(job_id).timestamp()
    assert before + 115 <= due <= time.time() + 125
    assert queue(redis_client, QUEUE_PBX).count == 0  # nothing retried sooner


def test_a_failure_without_retry_after_is_retried_by_a_queued_job(
    pbx: PbxServer, context: WorkerContext, redis_client: redis.Redis
) -> None:
    pbx.fail(1, 503)
    jobs.process_presences("contoso", [{"id": "g-alice", "availability": "Away",
                                        "activity": "Away", "observedAt": time.time()}])
    [job] = queue(redis_client, QUEUE_PBX).jobs
    assert (job.func_name, list(job.args)) == ("workers.jobs.deliver_pending",
                                               ["contoso", ["alice"]])
