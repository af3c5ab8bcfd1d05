"""The queue seam: every RQ job the bridge runs, with its queue, id, timeout and retry policy.

The webhook never calls RQ for what Graph or a PBX sends in bulk: it appends to the intake
stream in one round trip (`core.state.intake`); worker processes forward intake entries in
batches through `INTAKE_ROUTES`. Human-paced work (the admin page's jobs, a user's profile
sent to the builtin API) is enqueued directly. Job functions are named by dotted path so no
process imports another's code, and every job is enqueued by its `enqueue_<job>` function
below, never by hand.

Retries: only transient errors are retried (`is_transient`), at growing intervals, or when
Graph or the PBX said when (Retry-After), at that time; a wait for a peer's shared back-off
(`core.state.backoff`) is not counted as an attempt. A permanent error or a bug fails once
and lands in RQ's failed registry with its traceback.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import redis.exceptions
from redis import Redis
from redis.client import Pipeline
from rq import Callback, Queue, Retry
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from core.errors import BridgeError
from core.state import intake

# Queue names, highest priority first (a worker listens to all of them in this order).
QUEUE_LIFECYCLE = "lifecycle"  # no longer fed: drains jobs queued by earlier versions
QUEUE_PRESENCE = "presence"
QUEUE_PBX = "pbx"
QUEUE_GRAPH = "graph"
QUEUE_DEFAULT = "default"
QUEUES = (QUEUE_LIFECYCLE, QUEUE_PRESENCE, QUEUE_PBX, QUEUE_GRAPH, QUEUE_DEFAULT)


def queue_key(name: str) -> str:
    """RQ's list of one queue's waiting job ids (its depth is the list's length)."""
    return Queue.redis_queue_namespace_prefix + name


# Job paths (strings, so callers need not import the worker side).
JOB_NOTIFICATIONS = "workers.jobs.process_notifications"
JOB_LIFECYCLE = "workers.jobs.process_lifecycle"  # enqueued by earlier versions only
JOB_PBX_EVENTS = "workers.jobs.process_pbx_events"
JOB_REFRESH_CALL = "workers.jobs.refresh_call_presence"
JOB_DELIVER = "workers.jobs.deliver_pending"
JOB_MAINTAIN_PBX = "workers.jobs.maintain_pbx"
JOB_TICK = "workers.jobs.tick_profiles"
JOB_PRESENCES = "workers.jobs.process_presences"
JOB_SYNC_DIRECTORY = "workers.jobs.sync_directory"
JOB_PROFILE_REPORTS = "workers.jobs.process_profile_reports"

JOB_TIMEOUT_SECONDS = 60
RESULT_TTL_SECONDS = 0  # results are not read; state lives in our own keys
FAILURE_TTL_SECONDS = 7 * 24 * 3600
# Transient failures retry at growing intervals; after the last they land in RQ's failed
# registry (the dead letters of the queue itself) with their traceback.
RETRY = Retry(max=5, interval=[1, 5, 15, 60, 300])
# A longer Retry-After is capped: the clock's PBX round and resync sweep run meanwhile.
MAX_RETRY_AFTER_SECONDS = 3600.0

INTAKE_BATCH = 500  # entries read from the intake stream at once
ITEMS_PER_JOB = 200  # notifications carried by one RQ job
PRESENCES_PER_JOB = 650  # one getPresencesByUserId call's worth


def queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


# ---- retry policy ---------------------------------------------------------------------------

# Failures of a connection or a hung peer; a bridge error says for itself (`transient`).
# An abandoned job is one whose worker died mid-run (RQ's cleaning finds its lease expired):
# jobs are idempotent, so it runs again like any transient failure.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    AbandonedJobError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    httpx.TransportError,
    ConnectionError,
    TimeoutError,
    JobTimeoutException,
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a peer that is down, slow or throttling, never a bug or a refusal."""
    if isinstance(exc, BridgeError):
        return exc.transient
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status == 429 or status >= 500
    return isinstance(exc, _TRANSIENT_TYPES)


def retry_only_transient(
    job: Job, connection: Redis, exc_type: type[BaseException], exc: BaseException, tb: Any
) -> None:
    """RQ failure callback (it runs before RQ decides to retry): a permanent error or a bug
    fails at once; a transient one with a Retry-After is retried when its peer asked."""
    if not is_transient(exc):
        job.retries_left = 0  # RQ records the failure, with its traceback, and stops
        return
    if isinstance(exc, BridgeError) and exc.backing_off and job.retries_left is not None:
        # Waiting out a shared back-off is not a failed attempt: RQ's own count is undone,
        # so a job waits for its peer as long as that takes and is never failed for it.
        job.retries_left += 1
    wait = exc.retry_after if isinstance(exc, BridgeError) else None
    if wait is None or not job.retries_left or not job.retry_intervals:
        return
    # RQ takes this retry's interval at this index of the list (`Job.get_retry_interval`).
    intervals = list(job.retry_intervals)
    index = max(len(intervals) - job.retries_left, 0)
    # At least a second: an interval of 0 would queue the retry at once, a busy loop.
    intervals[index] = max(math.ceil(min(wait, MAX_RETRY_AFTER_SECONDS)), 1)
    job.retry_intervals = intervals


ON_FAILURE = Callback(f"{__name__}.retry_only_transient")


# ---- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """One job: where it runs, how long it may take, how it is retried and named.

    Ids are `{name}-{tenant}-{random}`: jobs are idempotent and Graph's resends are dropped
    before the stream (`core.state.intake`), so an id needs no content; the prefix tells an
    operator in RQ's registries what ran for whom.
    """

    name: str
    path: str
    queue: str
    timeout: int = JOB_TIMEOUT_SECONDS
    retry: Retry | None = RETRY

    def job_id(self, tenant: str) -> str:
        return f"{self.name}-{tenant}-{uuid.uuid4().hex}"

    def options(self, tenant: str) -> dict[str, Any]:
        """Keyword arguments of `Queue.enqueue` / `enqueue_at` for one job of this kind."""
        return {
            "job_id": self.job_id(tenant),
            "job_timeout": self.timeout,
            "result_ttl": RESULT_TTL_SECONDS,
            "failure_ttl": FAILURE_TTL_SECONDS,
            "retry": self.retry,
            "on_failure": ON_FAILURE if self.retry is not None else None,
        }

    def enqueue(self, redis: Redis, tenant: str, *args: Any) -> Job:
        return queue(redis, self.queue).enqueue(self.path, tenant, *args, **self.options(tenant))

    def enqueue_at(self, redis: Redis, when: dt.datetime, tenant: str, *args: Any) -> Job:
        q = queue(redis, self.queue)
        job: Job = q.enqueue_at(when, self.path, tenant, *args, **self.options(tenant))
        return job

    def enqueue_in(self, redis: Redis, delay: dt.timedelta, tenant: str, *args: Any) -> Job:
        return self.enqueue_at(redis, dt.datetime.now(dt.UTC) + delay, tenant, *args)

    def data(self, tenant: str, *args: Any) -> Any:
        """RQ's `EnqueueData` for `Queue.enqueue_many` (many jobs in one pipeline)."""
        options = self.options(tenant)
        options["timeout"] = options.pop("job_timeout")
        return Queue.prepare_data(self.path, args=(tenant, *args), **options)


NOTIFICATIONS = JobSpec("notifications", JOB_NOTIFICATIONS, QUEUE_PRESENCE)
PRESENCES = JobSpec("presences", JOB_PRESENCES, QUEUE_PRESENCE)
TICK = JobSpec("tick", JOB_TICK, QUEUE_PRESENCE)
PBX_EVENTS = JobSpec("pbx-events", JOB_PBX_EVENTS, QUEUE_GRAPH)
REFRESH_CALL = JobSpec("refresh-call", JOB_REFRESH_CALL, QUEUE_GRAPH)
SYNC_DIRECTORY = JobSpec("sync-directory", JOB_SYNC_DIRECTORY, QUEUE_GRAPH)
DELIVER = JobSpec("deliver", JOB_DELIVER, QUEUE_PBX)
MAINTAIN_PBX = JobSpec("maintain-pbx", JOB_MAINTAIN_PBX, QUEUE_PBX)
PROFILE_REPORTS = JobSpec("profile-reports", JOB_PROFILE_REPORTS, QUEUE_PRESENCE)


def _enqueue_chunks(
    redis: Redis,
    spec: JobSpec,
    tenant: str,
    items: Sequence[Any],
    size: int,
    pipeline: Pipeline | None,
) -> None:
    datas = [spec.data(tenant, list(items[i : i + size])) for i in range(0, len(items), size)]
    if datas:
        queue(redis, spec.queue).enqueue_many(datas, pipeline=pipeline)


def enqueue_notifications(
    redis: Redis, tenant: str, items: list[dict[str, Any]], pipeline: Pipeline | None = None
) -> None:
    """Intake items of kind "notification", `ITEMS_PER_JOB` a job."""
    _enqueue_chunks(redis, NOTIFICATIONS, tenant, items, ITEMS_PER_JOB, pipeline)


def enqueue_pbx_events(
    redis: Redis, tenant: str, items: list[dict[str, Any]], pipeline: Pipeline | None = None
) -> None:
    """Intake items of kind "pbx" (calls starting and ending), `ITEMS_PER_JOB` a job."""
    _enqueue_chunks(redis, PBX_EVENTS, tenant, items, ITEMS_PER_JOB, pipeline)


def enqueue_presences(redis: Redis, tenant: str, presences: list[dict[str, Any]]) -> None:
    """Presences the clock read (sweep, polling), `PRESENCES_PER_JOB` a job, one round trip."""
    _enqueue_chunks(redis, PRESENCES, tenant, presences, PRESENCES_PER_JOB, None)


def enqueue_tick(redis: Redis, tenant: str, users: list[str], at: float) -> Job:
    """Re-evaluate damped or held profiles of these users at `at` (epoch seconds)."""
    return TICK.enqueue_at(redis, dt.datetime.fromtimestamp(at, dt.UTC), tenant, users)


def enqueue_deliver(
    redis: Redis, tenant: str, users: list[str] | None = None, retry_after: float | None = None
) -> Job:
    """Apply pending desired state (of these users, or all); not before a PBX's Retry-After."""
    args: tuple[Any, ...] = () if users is None else (users,)
    if retry_after:
        wait = dt.timedelta(seconds=min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return DELIVER.enqueue_in(redis, wait, tenant, *args)
    return DELIVER.enqueue(redis, tenant, *args)


def enqueue_refresh_call(redis: Redis, tenant: str, pbx_user: str, delay: dt.timedelta) -> Job:
    """Read the presence our PBX-call session set again after `delay`, while the call lasts."""
    return REFRESH_CALL.enqueue_in(redis, delay, tenant, pbx_user)


def enqueue_maintain_pbx(redis: Redis, tenant: str) -> Job:
    """The clock's PBX round: refresh publications, re-apply what is not applied yet."""
    return MAINTAIN_PBX.enqueue(redis, tenant)


def enqueue_sync_directory(redis: Redis, tenant: str, full: bool = False) -> Job:
    """A directory delta round (or a full import), then relinking."""
    return SYNC_DIRECTORY.enqueue(redis, tenant, full)


@dataclass(frozen=True)
class ProfileReport:
    """The PBX says `user` now shows `profile`: its user chose it there, or it is our own
    write read back (the job tells them apart). Sources: the builtin API, AMI, BLF, ...

    `on_pbx` is False only where the bridge itself serves profiles (the builtin API): the
    profile still has to be published; everywhere else the PBX already shows it.
    `matches` are the profiles what the PBX reported is equally consistent with, where a
    report sees only part of what the PBX shows (an AMI event carries DND or presence, not
    both): if one of them is ours, so is the report.
    """

    user: str
    profile: str
    source: str
    at: float  # when the PBX reported it (epoch seconds)
    on_pbx: bool = True
    matches: tuple[str, ...] = ()

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"user": self.user, "profile": self.profile, "source": self.source,
                                 "at": self.at, "on_pbx": self.on_pbx}  # fmt: skip
        if self.matches:
            item["matches"] = list(self.matches)
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ProfileReport | None:
        """None for an item without a user or profile name; other fields fall back."""
        user, profile, at = item.get("user"), item.get("profile"), item.get("at")
        if not isinstance(user, str) or not isinstance(profile, str) or not user or not profile:
            return None
        return cls(
            user,
            profile,
            str(item.get("source") or "unknown"),
            float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            item.get("on_pbx") is not False,
            tuple(m for m in _list(item.get("matches")) if isinstance(m, str) and m),
        )


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def enqueue_profile_reports(
    redis: Redis,
    tenant: str,
    reports: Sequence[ProfileReport],
    pipeline: Pipeline | None = None,
) -> None:
    """Profiles the PBX reports, `ITEMS_PER_JOB` a job: the builtin API (a user's PUT, rare
    enough to skip the intake stream, like the admin page's jobs) and the listeners that
    follow a PBX (AMI, BLF) call this."""
    items = [r.to_item() for r in reports]
    _enqueue_chunks(redis, PROFILE_REPORTS, tenant, items, ITEMS_PER_JOB, pipeline)


def hand_to_clock(
    redis: Redis, tenant: str, items: list[dict[str, Any]], pipeline: Pipeline | None = None
) -> None:
    """Lifecycle items go straight to the clock's inbox: it alone acts on subscriptions."""
    pipe = pipeline if pipeline is not None else redis.pipeline(transaction=False)
    intake.queue_lifecycle(pipe, tenant, items)
    if pipeline is None:
        pipe.execute()


# ---- intake routing -------------------------------------------------------------------------

Route = Callable[[Redis, str, list[dict[str, Any]], Pipeline], None]
# Where each kind of intake item goes; an unknown kind is taken for a notification.
INTAKE_ROUTES: dict[str, Route] = {
    "notification": enqueue_notifications,
    "pbx": enqueue_pbx_events,
    "lifecycle": hand_to_clock,
}


def route(kind: str) -> Route:
    return INTAKE_ROUTES.get(kind, enqueue_notifications)
