"""The queue seam with a real RQ worker on a real Redis: what is retried, and when."""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from rq import Retry, SimpleWorker, get_current_job
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from core import queue as seam
from core.errors import BridgeError, GraphError, PbxError, TransientError
from core.identity import AuthUnavailable, SignInRequired
from core.queue import QUEUE_DEFAULT, JobSpec, queue

TENANT = "contoso"
ATTEMPTS = "test:attempts"


def attempt() -> int:
    """Count this run of the current job; returns how many runs there were."""
    job = get_current_job()
    assert job is not None
    return int(job.connection.incr(ATTEMPTS))


def fail_with_a_bug(tenant: str) -> None:
    attempt()
    raise KeyError("missing")


def fail_permanently(tenant: str) -> None:
    attempt()
    raise GraphError(403, "Forbidden", "the app may not read presence")


def fail_once_transiently(tenant: str) -> int:
    if attempt() == 1:
        raise PbxError("the PBX is restarting", transient=True)
    return 0


def fail_transiently(tenant: str) -> None:
    attempt()
    raise httpx.ConnectError("connection refused")


def fail_throttled(tenant: str) -> None:
    attempt()
    raise GraphError(429, "TooManyRequests", "slow down", retry_after=300)


class Waiting(TransientError):
    """What a call not made because its peer backs off raises (`GraphBackingOff` is one)."""

    backing_off = True


def wait_for_the_peer_four_times(tenant: str) -> int:
    if attempt() <= 4:
        raise Waiting("the peer backs off")
    return 0


def spec(job: str, retry: Retry | None = None) -> JobSpec:
    # Retry(max=2) has no interval: a retry is queued at once, so one burst runs it.
    return JobSpec(job, f"{__name__}.{job}", QUEUE_DEFAULT, retry=retry or Retry(max=2))


def run_jobs(client: redis.Redis) -> None:
    q = queue(client, QUEUE_DEFAULT)
    SimpleWorker([q], connection=client, serializer=JSONSerializer).work(burst=True)


def attempts(client: redis.Redis) -> int:
    return int(client.get(ATTEMPTS) or 0)


@pytest.mark.parametrize("job", ["fail_with_a_bug", "fail_permanently"])
def test_a_permanent_error_fails_once_with_its_traceback(
    redis_client: redis.Redis, job: str
) -> None:
    enqueued = spec(job).enqueue(redis_client, TENANT)
    run_jobs(redis_client)
    q = queue(redis_client, QUEUE_DEFAULT)
    assert (attempts(redis_client), q.failed_job_registry.get_job_ids()) == (1, [enqueued.id])
    assert (q.count, q.scheduled_job_registry.count) == (0, 0)
    result = Job.fetch(enqueued.id, connection=redis_client, serializer=JSONSerializer)
    failure = result.latest_result()
    assert failure is not None and failure.exc_string is not None
    assert "Traceback" in failure.exc_string and f"in {job}" in failure.exc_string


def test_a_transient_error_is_retried(redis_client: redis.Redis) -> None:
    spec("fail_once_transiently").enqueue(redis_client, TENANT)
    run_jobs(redis_client)
    q = queue(redis_client, QUEUE_DEFAULT)
    assert (attempts(redis_client), q.failed_job_registry.count) == (2, 0)


def test_waiting_for_a_backing_off_peer_uses_none_of_the_retries(
    redis_client: redis.Redis,
) -> None:
    spec("wait_for_the_peer_four_times").enqueue(redis_client, TENANT)  # Retry(max=2)
    run_jobs(redis_client)
    q = queue(redis_client, QUEUE_DEFAULT)
    assert (attempts(redis_client), q.failed_job_registry.count) == (5, 0)


def test_a_transient_error_fails_after_the_last_retry(redis_client: redis.Redis) -> None:
    spec("fail_transiently").enqueue(redis_client, TENANT)
    run_jobs(redis_client)
    q = queue(redis_client, QUEUE_DEFAULT)
    assert (attempts(redis_client), q.failed_job_registry.count) == (3, 1)


def scheduled_in(client: redis.Redis, job_id: str) -> float:
    registry = queue(client, QUEUE_DEFAULT).scheduled_job_registry
    assert registry.get_job_ids() == [job_id]
    return float(registry.get_scheduled_time(job_id).timestamp()) - time.time()


def test_a_long_retry_after_schedules_the_retry_when_graph_asked(
    redis_client: redis.Redis,
) -> None:
    job = spec("fail_throttled", seam.RETRY).enqueue(redis_client, TENANT)
    run_jobs(redis_client)
    # Graph said 300 s; the backoff's first step would have been 1 s.
    assert 290 <= scheduled_in(redis_client, job.id) <= 301
    assert (attempts(redis_client), queue(redis_client, QUEUE_DEFAULT).count) == (1, 0)


def test_without_retry_after_the_backoff_applies(redis_client: redis.Redis) -> None:
    job = spec("fail_transiently", seam.RETRY).enqueue(redis_client, TENANT)
    run_jobs(redis_client)
    assert scheduled_in(redis_client, job.id) <= seam.RETRY.intervals[0]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientError("timeout"), True),
        (GraphError(503, "ServiceUnavailable", "busy"), True),
        (GraphError(429, "TooManyRequests", "slow"), True),
        (GraphError(404, "NotFound", "no such user"), False),
        (PbxError("refused", transient=False), False),
        (PbxError("down", transient=True), True),
        (AuthUnavailable("the identity platform is down"), True),
        (SignInRequired(TENANT, "svc@contoso.com", "invalid_grant"), False),
        (BridgeError("a bridge error that says nothing"), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (redis.exceptions.ConnectionError("gone"), True),
        (JobTimeoutException("60 s"), True),
        (AbandonedJobError(), True),  # its worker died mid-run: run it again
        (KeyError("bug"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_counts_as_transient(error: BaseException, transient: bool) -> None:
    assert seam.is_transient(error) is transient


@pytest.mark.parametrize(("status", "transient"), [(502, True), (429, True), (400, False)])
def test_an_http_status_error_is_transient_for_5xx_and_429(status: int, transient: bool) -> None:
    request = httpx.Request("GET", "https://login.example.test/keys")
    error = httpx.HTTPStatusError("x", request=request, response=httpx.Response(status))
    assert seam.is_transient(error) is transient


def test_a_typed_job_carries_its_queue_timeout_retry_and_id(redis_client: redis.Redis) -> None:
    job = seam.enqueue_deliver(redis_client, TENANT, ["alice"])
    assert (job.origin, job.func_name, list(job.args)) == (
        seam.QUEUE_PBX,
        seam.JOB_DELIVER,
        [TENANT, ["alice"]],
    )
    assert (job.timeout, job.retries_left, job.retry_intervals) == (
        seam.JOB_TIMEOUT_SECONDS,
        seam.RETRY.max,
        seam.RETRY.intervals,
    )
    assert job.failure_callback is seam.retry_only_transient
    assert job.id.startswith(f"deliver-{TENANT}-")


def test_a_delivery_waits_for_the_pbx_retry_after(redis_client: redis.Redis) -> None:
    job = seam.enqueue_deliver(redis_client, TENANT, ["alice"], retry_after=120)
    registry = queue(redis_client, seam.QUEUE_PBX).scheduled_job_registry
    due = registry.get_scheduled_time(job.id).timestamp() - time.time()
    assert 115 <= due <= 121
    assert queue(redis_client, seam.QUEUE_PBX).count == 0


def test_presences_are_enqueued_650_a_job_in_one_round_trip(redis_client: redis.Redis) -> None:
    presences = [{"id": f"u{n}"} for n in range(1300 + 1)]
    seam.enqueue_presences(redis_client, TENANT, presences)
    jobs = queue(redis_client, seam.QUEUE_PRESENCE).get_jobs()
    assert [len(j.args[1]) for j in jobs] == [650, 650, 1]


def test_every_intake_kind_has_a_route_and_an_unknown_one_is_a_notification() -> None:
    assert set(seam.INTAKE_ROUTES) == {"notification", "lifecycle", "pbx"}
    assert seam.route("something-new") is seam.enqueue_notifications


def test_profile_reports_go_to_the_presence_queue_as_plain_items(
    redis_client: redis.Redis,
) -> None:
    report = seam.ProfileReport("alice", "Lunch", "builtin-api", 1763794800.5, on_pbx=False)
    seam.enqueue_profile_reports(redis_client, TENANT, [report])
    [job] = queue(redis_client, seam.QUEUE_PRESENCE).get_jobs()
    assert (job.func_name, job.args[0]) == (seam.JOB_PROFILE_REPORTS, TENANT)
    assert [seam.ProfileReport.from_item(i) for i in job.args[1]] == [report]
    assert job.id.startswith(f"profile-reports-{TENANT}-")


def test_a_profile_report_with_matches_goes_through_the_queue_whole(
    redis_client: redis.Redis,
) -> None:
    report = seam.ProfileReport("alice", "Do Not Disturb", "ami", 1.5, matches=("Busy", "On Call"))
    seam.enqueue_profile_reports(redis_client, TENANT, [report])
    [job] = queue(redis_client, seam.QUEUE_PRESENCE).get_jobs()
    assert [seam.ProfileReport.from_item(i) for i in job.args[1]] == [report]


@pytest.mark.parametrize(
    ("item", "read"),
    [
        ({"user": "alice", "profile": "Lunch"},
         seam.ProfileReport("alice", "Lunch", "unknown", 0.0)),
        ({"user": "alice", "profile": "Lunch", "at": True, "on_pbx": "no"},
         seam.ProfileReport("alice", "Lunch", "unknown", 0.0, on_pbx=True)),
        ({"user": "alice", "profile": "Do Not Disturb", "matches": ["Busy", 3, ""]},
         seam.ProfileReport("alice", "Do Not Disturb", "unknown", 0.0, matches=("Busy",))),
        ({"user": "alice", "profile": "Lunch", "matches": "Busy"},
         seam.ProfileReport("alice", "Lunch", "unknown", 0.0)),
        ({"user": "alice", "profile": ""}, None),
        ({"user": 7, "profile": "Lunch"}, None),
        ({}, None),
    ],
    ids=["minimal", "mistyped-fields", "matches", "mistyped-matches", "no-profile",
         "no-user-name", "empty"],
)  # fmt: skip
def test_a_profile_report_item_is_read_tolerantly(
    item: dict[str, object], read: seam.ProfileReport | None
) -> None:
    assert seam.ProfileReport.from_item(item) == read


def test_an_abandoned_job_is_retried_not_dead_lettered(redis_client: redis.Redis) -> None:
    """Its worker died mid-run; RQ's cleaning finds its lease expired and applies the policy."""
    job = spec("fail_transiently").enqueue(redis_client, TENANT)
    q = queue(redis_client, QUEUE_DEFAULT)
    redis_client.lpop(q.key)  # taken by a worker that then died
    pipe = redis_client.pipeline()
    job.set_status(JobStatus.STARTED, pipeline=pipe)
    Execution.create(job, 1, pipeline=pipe)
    pipe.execute()
    StartedJobRegistry(queue=q).cleanup(timestamp=time.time() + 10)  # the lease is over
    assert (q.job_ids, FailedJobRegistry(queue=q).count) == ([job.id], 0)
