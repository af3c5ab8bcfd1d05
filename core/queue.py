"""The queue seam: how work crosses Redis between the processes.

The webhook never calls RQ: it appends to the intake stream in one round trip. Worker
processes forward intake entries to RQ in batches (`workers.intake`). Job functions are
named by dotted path so the web process never imports worker code.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

# Queue names, highest priority first (a worker listens to all of them in this order).
QUEUE_LIFECYCLE = "lifecycle"
QUEUE_PRESENCE = "presence"
QUEUE_PBX = "pbx"
QUEUE_GRAPH = "graph"
QUEUE_DEFAULT = "default"
QUEUES = (QUEUE_LIFECYCLE, QUEUE_PRESENCE, QUEUE_PBX, QUEUE_GRAPH, QUEUE_DEFAULT)

# Job paths (strings, so callers need not import the worker side).
JOB_NOTIFICATIONS = "workers.jobs.process_notifications"
JOB_LIFECYCLE = "workers.jobs.process_lifecycle"
JOB_PBX_EVENTS = "workers.jobs.process_pbx_events"
JOB_REFRESH_CALL = "workers.jobs.refresh_call_presence"
JOB_DELIVER = "workers.jobs.deliver_pending"
JOB_MAINTAIN_PBX = "workers.jobs.maintain_pbx"
JOB_TICK = "workers.jobs.tick_profiles"
JOB_PRESENCES = "workers.jobs.process_presences"
JOB_SYNC_DIRECTORY = "workers.jobs.sync_directory"

JOB_TIMEOUT_SECONDS = 60
RESULT_TTL_SECONDS = 0  # results are not read; state lives in our own keys
FAILURE_TTL_SECONDS = 7 * 24 * 3600
# Transient failures retry at growing intervals; after the last they land in RQ's
# failed registry (the dead letters of the queue itself) with their traceback.
RETRY = Retry(max=5, interval=[1, 5, 15, 60, 300])

INTAKE_BATCH = 500  # entries read from the intake stream at once
ITEMS_PER_JOB = 200  # notifications carried by one RQ job


def queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def job_kwargs() -> dict[str, Any]:
    return {
        "job_timeout": JOB_TIMEOUT_SECONDS,
        "result_ttl": RESULT_TTL_SECONDS,
        "failure_ttl": FAILURE_TTL_SECONDS,
        "retry": RETRY,
    }
