"""`python -m workers`: the Procfile's worker process (RQ worker plus intake forwarder)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from functools import partial

from redis import Redis

from core.errors import ConfigError
from core.logging import configure
from core.queue import QUEUES, enqueue_deliver, queue
from core.redis import connect
from core.settings import Settings, load_or_exit
from core.state import subscriptions
from workers.forwarder import IntakeForwarder
from workers.heartbeat import Heartbeat, Problems
from workers.rq_worker import BridgeWorker, watch_reconnects
from workers.runtime import WorkerRuntime, install
from workers.scheduler import Scheduler

log = logging.getLogger(__name__)


def _adapter_problems(runtime: WorkerRuntime, tenant: str) -> list[str]:
    """PBX adapter options are validated by the adapters; report them at start, all at once."""
    try:
        runtime.tenant(tenant)
    except ConfigError as exc:
        return [f"tenants[{tenant}].{p}" for p in exc.problems]
    return []


def repair_lost_jobs(redis: Redis, settings: Settings) -> None:
    """A job popped as the connection broke is lost: a resync sweep (the clock pays it within
    seconds) rereads every user's presence, and one delivery applies whatever is pending."""
    for tenant in settings.tenants:
        subscriptions.request_sweep(redis, tenant.name)
        enqueue_deliver(redis, tenant.name)
    log.warning("worker: a dequeue lost its connection; resync sweeps requested")


def main() -> int:
    settings = load_or_exit("worker")
    configure(settings.process.log_level)
    redis = connect(settings.process.redis_url)
    runtime = WorkerRuntime(settings, redis)
    config = [p for t in settings.tenants for p in _adapter_problems(runtime, t.name)]
    if config:
        print(f"presence-bridge worker: {ConfigError(config)}", file=sys.stderr)
        return 2
    # Blocking reads need a longer socket timeout than the default.
    blocking = watch_reconnects(Redis.from_url(settings.process.redis_url, socket_timeout=30))
    install(runtime)
    name = f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    problems = Problems()
    forwarder = IntakeForwarder(blocking, name, settings.process.coalesce_window_ms, problems)
    # Not RQ's forked scheduler: it dies with the first Redis error (see workers/scheduler.py).
    scheduler = Scheduler(redis, QUEUES, problems, settings.process.log_level)
    threads = [
        threading.Thread(target=Heartbeat(redis, name, problems).run, args=(stop,), daemon=True),
        threading.Thread(target=forwarder.run, args=(stop,), daemon=True),
        threading.Thread(target=scheduler.run, args=(stop,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    # SimpleWorker runs jobs in-process: ~3x the throughput of fork-per-job (see BENCHMARKS).
    worker = BridgeWorker(
        [queue(blocking, q) for q in QUEUES],
        blocking,
        name,
        partial(repair_lost_jobs, redis, settings),
    )
    print(f"worker: {name} listening on {', '.join(QUEUES)}", flush=True)
    try:
        worker.work(logging_level=settings.process.log_level)
    finally:
        stop.set()
        threads[2].join(timeout=5)  # the scheduler hands its locks over
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
