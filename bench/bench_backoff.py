"""PBX retry storms (issue 11): what a PBX that answers 503 for a while receives from the bridge.

A local HTTP PBX (uvicorn on loopback) answers every write with 503, with or without a
Retry-After, for `--outage` seconds, then 204. Twenty users' presences change once each
(one presence job per user, as notifications come); a real RQ worker (SimpleWorker, with
its scheduler) runs every job, and the clock's PBX round is queued every 60 s as the clock
does. Counted: requests that reached the PBX during the outage, and in all until every user
is applied. A private redis-server; the same script runs on the code before the change.

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_backoff.py [--outage 120] [--users 20]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from _common import emit, machine
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.queue import QUEUES, enqueue_maintain_pbx, queue
from core.settings import load_settings
from core.state import delivery, links
from emulator.harness.redis_server import RedisServer
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from workers import jobs
from workers.runtime import WorkerRuntime, install

T = "contoso"
PBX_ROUND_SECONDS = 60.0  # the clock's default `pbx_reconcile_every`


class OutagePbx:
    """Answers 503 (with `retry_after`, if any) until `down_until`, then 204; counts."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.retry_after: str | None = None
        self.arrivals: list[float] = []
        self.url = ""
        self._lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        now = time.time()
        with self._lock:
            self.arrivals.append(now)
        if now < self.down_until:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return Response(status_code=503, headers=headers)
        return Response(status_code=204)


def scenario(
    tmp: Path, client: redis.Redis, url: str, pbx: OutagePbx, users: int, outage: float,
    retry_after: str | None,
) -> dict[str, Any]:  # fmt: skip
    client.flushdb()
    options = (f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{pbx.url}"\n'
               '[tenants.pbx.options.actions.apply_profile]\nurl = "/users/$user"\n'
               'method = "PUT"\n')  # fmt: skip
    env = write_env(tmp, tenant_toml(pbx=options), PRESENCE_BRIDGE_REDIS_URL=url,
                    **{secret_env(T, "CLIENT_SECRET"): "s"})  # fmt: skip
    runtime = WorkerRuntime(load_settings(env), client)
    install(runtime)
    names = [f"u{n:02}" for n in range(users)]
    links.replace(client, T, {f"g-{u}": [u] for u in names})
    pbx.arrivals.clear()
    pbx.retry_after = retry_after
    start = time.time()
    pbx.down_until = start + outage
    for user in names:
        presence = {"id": f"g-{user}", "availability": "Away", "activity": "Away"}
        jobs.process_presences(T, [{**presence, "observedAt": time.time()}])
    next_round = start + PBX_ROUND_SECONDS
    deadline = start + outage + 900
    while delivery.pending_users(client, T) and time.time() < deadline:
        if time.time() >= next_round:
            enqueue_maintain_pbx(client, T)
            next_round += PBX_ROUND_SECONDS
        worker = SimpleWorker([queue(client, q) for q in QUEUES], connection=client,
                              serializer=JSONSerializer)  # fmt: skip
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        time.sleep(0.2)
    converged = time.time() if not delivery.pending_users(client, T) else None
    install(None)
    runtime.close()
    during = [a for a in pbx.arrivals if a < pbx.down_until]
    failed = sum(queue(client, q).failed_job_registry.count for q in QUEUES)
    return {
        "retry_after": retry_after,
        "outage_seconds": outage,
        "requests_during_outage": len(during),
        "requests_total": len(pbx.arrivals),
        "converged_after_outage_seconds": None
        if converged is None
        else round(converged - pbx.down_until, 1),
        "failed_jobs": failed,
        "dead_letters": len(delivery.dead_letters(client, T)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=120.0)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    pbx = OutagePbx()
    app = Starlette(routes=[Route("/{path:path}", pbx.handle, methods=["PUT"])])
    server = RedisServer()
    server.start()
    results = []
    try:
        with ServedApp(app, lifespan="off") as served, tempfile.TemporaryDirectory() as tmp:
            pbx.url = served.url
            client = redis.Redis.from_url(server.url(0))
            for retry_after in ("30", None):
                result = scenario(Path(tmp), client, server.url(0), pbx, args.users,
                                  args.outage, retry_after)  # fmt: skip
                print(result, flush=True)
                results.append(result)
            client.close()
    finally:
        server.stop()
    emit({"benchmark": "backoff", "users": args.users, "machine": machine(), "runs": results})


if __name__ == "__main__":
    main()
