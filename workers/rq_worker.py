"""The RQ worker the process runs: a `SimpleWorker` whose dead jobs are retried within a minute.

RQ's defaults suit long jobs and few restarts: a started job of a `SimpleWorker` is taken
for abandoned only after its timeout plus 60 s, and the registries that notice it are
cleaned every 10 min, by a worker that waits up to 405 s per dequeue. Here a running job
holds a short lease that a thread renews, every worker cleans every few seconds, and Redis
errors anywhere in the loop are waited out instead of ending the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import rq.worker_registration as worker_registration
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.registry import clean_registries
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus

log = logging.getLogger(__name__)

JOB_LEASE_SECONDS = 20  # a started job nobody renews is abandoned (and retried) after this
LEASE_RENEW_SECONDS = 5
MAINTENANCE_SECONDS = 10  # how often a worker looks for abandoned jobs
# RQ blocks `worker_ttl - 15` s per dequeue and cleans only between dequeues.
WORKER_TTL_SECONDS = 20
# RQ's cleaning lock lasts 899 s: one left by a worker killed mid-pass would stop every
# worker from cleaning that queue, and so from retrying its abandoned jobs, for 15 min.
CLEANING_LOCK_SECONDS = 60


# Set when a connection of the worker's client connects again after losing its socket. With
# several queues RQ pops a job id with BLPOP, and redis-py retries a command whose connection
# broke: a reply lost that way loses the popped job, with no record of it anywhere.
_reconnected = threading.Event()


class _ReconnectWatch:
    _connected_before = False
    _sock: object

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        again = self._sock is None and self._connected_before
        super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        self._connected_before = True
        if again:
            _reconnected.set()


def watch_reconnects(client: Redis) -> Redis:
    """Make `client`'s connections (plain or TLS, as its URL chose) report reconnecting."""
    pool = client.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"Watched{base.__name__}", (_ReconnectWatch, base), {})
    return client


class BridgeWorker(SimpleWorker):
    max_connection_wait_time = 2.0  # RQ backs off to 60 s between tries of a lost Redis

    def __init__(
        self,
        queues: Sequence[Queue],
        connection: Redis,
        name: str,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        """`on_reconnect` runs once Redis answers again after a connection of `connection`
        (made by `watch_reconnects`) was lost: a job popped then is gone, so the caller asks
        for what repairs it."""
        self._on_reconnect = on_reconnect
        super().__init__(
            list(queues),
            name=name,
            connection=connection,
            serializer=JSONSerializer,
            maintenance_interval=MAINTENANCE_SECONDS,
            worker_ttl=WORKER_TTL_SECONDS,
        )

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return JOB_LEASE_SECONDS

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            execution = self.prepare_execution(job)
            done = threading.Event()
            lease = threading.Thread(
                target=self._renew_lease, args=(job, execution, done), daemon=True
            )
            lease.start()
            try:
                self.perform_job(job, queue, execution)
            finally:
                done.set()
                lease.join()
            self.set_state(WorkerStatus.IDLE)
        except (RedisError, OSError):
            # Redis went away while the job ended: its lease runs out, and a worker's
            # cleaning retries it (jobs are idempotent).
            log.warning("worker: redis unavailable while job %s ended", job.id)

    def _renew_lease(self, job: Job, execution: Execution, done: threading.Event) -> None:
        while not done.wait(LEASE_RENEW_SECONDS):
            try:
                self.maintain_heartbeats(job, execution)
            except (RedisError, OSError):
                log.warning("worker: could not renew the lease of job %s", job.id)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            with self.connection.pipeline() as pipe:
                super().heartbeat(timeout, pipe)
                pipe.hexists(self.key, "birth")
                registered = pipe.execute()[-1]
            if not registered:  # Redis came back empty: RQ would no longer list this worker
                self._register_again()
            if _reconnected.is_set() and self._on_reconnect is not None:
                _reconnected.clear()
                self._on_reconnect()
        except (RedisError, OSError):
            log.debug("worker: heartbeat failed; the dequeue waits for Redis")

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        try:  # RQ sets it outside its Redis retry loop, before every dequeue
            super().set_state(state)
        except (RedisError, OSError):
            log.debug("worker: state not recorded; the dequeue waits for Redis")

    def register_death(self) -> None:
        try:
            super().register_death()  # type: ignore[no-untyped-call]
        except (RedisError, OSError):  # its worker record expires by itself
            log.warning("worker: redis unavailable at exit")

    def _register_again(self) -> None:
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except (RedisError, OSError):
            log.warning("worker: redis unavailable")

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except (RedisError, OSError):
            log.warning("worker: redis unavailable for cleaning; trying again")

    def clean_registries(self) -> None:
        """RQ's pass (abandoned jobs retried, stale entries dropped), under a shorter lock."""
        for queue in self.queues:
            key = queue.registry_cleaning_key
            if not self.connection.set(key, 1, nx=True, ex=CLEANING_LOCK_SECONDS):
                continue
            try:
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
            finally:
                queue.release_maintenance_lock()  # type: ignore[no-untyped-call]
        self.last_cleaned_at = now()  # type: ignore[assignment]
