"""`python -m workers`: the Procfile's worker process (RQ worker plus intake forwarder)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core.errors import ConfigError
from core.logging import configure
from core.queue import QUEUES, queue
from core.redis import connect
from core.settings import load_or_exit
from core.state import coordination
from workers.forwarder import IntakeForwarder
from workers.runtime import WorkerRuntime, install

HEARTBEAT_SECONDS = 10


def heartbeat(redis: Redis, stop: threading.Event) -> None:
    while not stop.is_set():
        # On failure readiness will show it; the worker keeps trying.
        with contextlib.suppress(RedisError, OSError):
            coordination.beat(
                redis, coordination.Process.WORKER, time.time(), 3 * HEARTBEAT_SECONDS
            )
        stop.wait(HEARTBEAT_SECONDS)


def _adapter_problems(runtime: WorkerRuntime, tenant: str) -> list[str]:
    """PBX adapter options are validated by the adapters; report them at start, all at once."""
    try:
        runtime.tenant(tenant)
    except ConfigError as exc:
        return [f"tenants[{tenant}].{p}" for p in exc.problems]
    return []


def main() -> int:
    settings = load_or_exit("worker")
    configure(settings.process.log_level)
    redis = connect(settings.process.redis_url)
    runtime = WorkerRuntime(settings, redis)
    problems = [p for t in settings.tenants for p in _adapter_problems(runtime, t.name)]
    if problems:
        print(f"presence-bridge worker: {ConfigError(problems)}", file=sys.stderr)
        return 2
    # Blocking reads need a longer socket timeout than the default.
    blocking = Redis.from_url(settings.process.redis_url, socket_timeout=30)
    install(runtime)
    name = f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    threads = [
        threading.Thread(target=heartbeat, args=(redis, stop), daemon=True),
        threading.Thread(
            target=IntakeForwarder(blocking, name, settings.process.coalesce_window_ms).run,
            args=(stop,),
            daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    # SimpleWorker runs jobs in-process: ~3x the throughput of fork-per-job (see BENCHMARKS).
    worker = SimpleWorker(
        [queue(blocking, q) for q in QUEUES],
        connection=blocking,
        serializer=JSONSerializer,
        name=name,
    )
    print(f"worker: {name} listening on {', '.join(QUEUES)}", flush=True)
    try:
        worker.work(with_scheduler=True, logging_level=settings.process.log_level)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
