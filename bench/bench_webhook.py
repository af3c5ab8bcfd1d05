"""Webhook intake benchmark (issue 2): the real web process against a bare Starlette endpoint.

Starts a private redis-server, then for each uvicorn worker count: a bare endpoint that only
answers 202, and the real `python -m webhook`, both driven by wrk with realistic Graph
presence batches (1 and 50 items) for a bounded time; then a fixed-rate run at 1,000
requests/s against the webhook. Checks that Redis holds every notification acknowledged with
202. The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_webhook.py [--seconds 10] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from _common import (
    PYTHON,
    cpu_seconds,
    emit,
    machine,
    open_loop,
    percentile,
    run_wrk,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.harness.ports import free_port
from emulator.harness.processes import Service, private_env
from emulator.harness.redis_server import RedisServer

PATH = "/graph/notifications"
TENANTS = ("contoso", "fabrikam")
SUBSCRIPTIONS_PER_TENANT = 4
USERS = 1000
TARGET_NOTIFICATIONS_50 = 25_000
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
INTAKE_STREAM = "pb:intake"  # core.state.intake names; spelled out: the bench reads no app code
METRICS_HASH = "pb:metrics"


# -- the bare endpoint, served exactly as webhook/__main__.py serves the real app ----------


async def _accept(request: Request) -> Response:
    return Response(status_code=202)


def bare_factory() -> Starlette:
    return Starlette(routes=[Route(PATH, _accept, methods=["POST"])])


def serve_bare(port: int, workers: int) -> None:
    import uvicorn

    # Same options as webhook/__main__.py, so the difference measured is the app's work.
    uvicorn.run(
        "bench_webhook:bare_factory",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=30,
    )


# -- payloads ------------------------------------------------------------------------------


class Payloads:
    """Graph presence notifications (~0.6 KB an item), each with its own notification id.

    Items are built from pre-rendered fragments so that the Lua script given to wrk and the
    Python open-loop generator send the same bytes.
    """

    def __init__(self) -> None:
        self.subscriptions = [
            (tenant, str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex)
            for tenant in TENANTS
            for _ in range(SUBSCRIPTIONS_PER_TENANT)
        ]
        self.sub_parts = [
            f'"subscriptionId":"{sid}","clientState":"{state}",'
            for _, sid, state in self.subscriptions
        ]
        tenant_id = "11111111-2222-3333-4444-555555555555"
        self.user_parts = []
        for n in range(USERS):
            user = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user-{n}"))
            self.user_parts.append(
                '"changeType":"updated",'
                f'"resource":"communications/presences/{user}",'
                '"subscriptionExpirationDateTime":"2026-11-22T10:00:00.0000000Z",'
                '"resourceData":{"@odata.type":"#Microsoft.Graph.presence",'
                f'"@odata.id":"communications/presences/{user}","id":"{user}"}},'
                f'"tenantId":"{tenant_id}","organizationId":"{tenant_id}"}}'
            )

    def body(self, tag: str, first: int, batch: int) -> bytes:
        items = [
            f'{{"id":"{tag}-{k}",'
            + self.sub_parts[k % len(self.sub_parts)]
            + self.user_parts[k % USERS]
            for k in range(first, first + batch)
        ]
        return ('{"value":[' + ",".join(items) + "]}").encode()

    def lua(self, batch: int) -> str:
        """A wrk script for one run; a fresh run tag keeps ids unique across runs."""

        def table(parts: list[str]) -> str:
            return "{" + ",".join(f"[==[{p}]==]" for p in parts) + "}"

        # Each wrk thread has its own Lua state: `tag` (set in setup) keeps ids distinct.
        return f"""
local subs = {table(self.sub_parts)}
local users = {table(self.user_parts)}
local batch = {batch}
local headers = {{["Content-Type"] = "application/json"}}
local run = "{uuid.uuid4().hex[:12]}"
local threads = 0
local counter = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", run .. "-" .. threads)
end
function request()
  local items = {{}}
  for i = 1, batch do
    local k = counter
    counter = counter + 1
    items[i] = '{{"id":"' .. tag .. "-" .. k .. '",' .. subs[k % #subs + 1] .. users[k % #users + 1]
  end
  return wrk.format("POST", "{PATH}", headers, '{{"value":[' .. table.concat(items, ",") .. "]}}")
end
"""


# -- runs ----------------------------------------------------------------------------------


def register(redis: RedisServer, payloads: Payloads) -> None:
    """Start from an empty DB with the subscriptions registered, as the clock would."""
    from core.state import subscriptions

    redis.client.flushdb()
    for tenant, sid, state in payloads.subscriptions:
        subscriptions.register(redis.client, sid, tenant, state)


def counters(redis: RedisServer) -> dict[str, int]:
    raw: dict[bytes, bytes] = redis.client.hgetall(METRICS_HASH)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def settled_counters(redis: RedisServer) -> dict[str, int]:
    """Counters once requests still in flight when the client stopped have landed."""
    last = counters(redis)
    while True:
        time.sleep(0.3)
        now = counters(redis)
        if now == last:
            return now
        last = now


def wrk_run(
    url: str,
    lua: Callable[[int], str],
    batch: int,
    args: argparse.Namespace,
    cpu_of: dict[str, Callable[[], float]],
) -> dict[str, Any]:
    before = {name: f() for name, f in cpu_of.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = run_wrk(
        url, lua(batch), threads=args.threads, connections=args.connections, seconds=args.seconds
    )
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = w["duration_us"] / 1e6
    acked = w["requests"] - w["status"]
    cpu = {name: round((f() - before[name]) / seconds, 2) for name, f in cpu_of.items()}
    cpu["wrk"] = round(
        (wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime)
        / seconds,
        2,
    )
    return {
        "requests_per_s": round(acked / seconds),
        "notifications_per_s": round(acked * batch / seconds),
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
        "acked_requests": acked,
        "errors": {k: w[k] for k in ("connect", "read", "write", "status", "timeout") if w[k]},
        "cpu_cores": cpu,
    }


def check_stored(redis: RedisServer, result: dict[str, Any], batch: int, in_flight: int) -> None:
    """Every acknowledged notification is in Redis; only in-flight extras may exceed that."""
    c = settled_counters(redis)
    acked_items = result["acked_requests"] * batch
    stored = c.get("accepted", 0)
    entries = int(redis.client.xlen(INTAKE_STREAM))
    dropped = {k: v for k, v in c.items() if k.startswith("dropped:")}
    result["stored"] = {"items": stored, "entries": entries, "dropped": dropped}
    result["lost"] = max(0, acked_items - stored)
    extra = stored - acked_items
    result["stored_ok"] = (
        result["lost"] == 0
        and not dropped
        and entries * batch == stored
        and c.get("received", 0) == stored
        and extra <= in_flight * batch
    )


def fixed_rate_run(
    port: int, redis: RedisServer, payloads: Payloads, args: argparse.Namespace
) -> dict[str, Any]:
    def body(n: int) -> bytes:
        return payloads.body("fixed", n, 1)

    run = open_loop(port, PATH, body, rate=args.rate, seconds=args.seconds)
    ok = run.statuses.get(202, 0)
    lat = run.latencies
    result: dict[str, Any] = {
        "rate": args.rate,
        "sent": run.sent,
        "acked": ok,
        "errors": run.errors,
        "achieved_per_s": round(len(lat) / run.elapsed),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
    }
    # Every answer was awaited, so here the count must match exactly.
    stored = counters(redis).get("accepted", 0)
    result["stored"] = stored
    result["stored_ok"] = stored == ok == run.sent
    return result


def http_status(url: str, method: str = "GET") -> int:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status)
    except OSError:
        return 0


def bench_workers(
    workers: int, redis: RedisServer, payloads: Payloads, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    env = private_env({})

    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    bare = Service(
        [
            PYTHON,
            os.path.join(bench_dir, "bench_webhook.py"),
            "serve-bare",
            str(port),
            str(workers),
        ],
        env,
        lambda: http_status(url, "POST") == 202,
        "bare endpoint",
    )
    try:
        cpu_of = {
            "server": lambda: cpu_seconds(bare.pids()),
            "redis": lambda: cpu_seconds([redis.pid]),
        }
        run_wrk(url, payloads.lua(1), threads=args.threads, connections=args.connections, seconds=2)
        for batch in (1, 50):
            out[f"bare_{batch}"] = wrk_run(url, payloads.lua, batch, args, cpu_of)
    finally:
        bare.stop()

    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    web_env = {
        **env,
        "PRESENCE_BRIDGE_REDIS_URL": redis.url(),
        "PRESENCE_BRIDGE_HOST": "127.0.0.1",
        "PRESENCE_BRIDGE_PORT": str(port),
        "PRESENCE_BRIDGE_WEB_WORKERS": str(workers),
        "PRESENCE_BRIDGE_LOG_LEVEL": "WARNING",
    }
    web = Service(
        [PYTHON, "-m", "webhook"],
        web_env,
        lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200,
        "webhook",
    )
    try:
        cpu_of = {
            "server": lambda: cpu_seconds(web.pids()),
            "redis": lambda: cpu_seconds([redis.pid]),
        }
        register(redis, payloads)
        run_wrk(url, payloads.lua(1), threads=args.threads, connections=args.connections, seconds=2)
        for batch in (1, 50):
            settled_counters(redis)  # the previous run's stragglers land before the flush
            register(redis, payloads)
            result = wrk_run(url, payloads.lua, batch, args, cpu_of)
            check_stored(redis, result, batch, args.connections)
            out[f"webhook_{batch}"] = result
        settled_counters(redis)
        register(redis, payloads)
        out["fixed_rate"] = fixed_rate_run(port, redis, payloads, args)
    finally:
        web.stop()
    out["ratio_single_to_bare"] = round(
        out["webhook_1"]["requests_per_s"] / out["bare_1"]["requests_per_s"], 3
    )
    return out


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    best_50 = max(r["webhook_50"]["notifications_per_s"] for r in runs.values())
    best_ratio = max(r["ratio_single_to_bare"] for r in runs.values())
    best_p99 = min(r["fixed_rate"]["p99_ms"] for r in runs.values())
    return {
        "notifications_per_s_50": {
            "target": TARGET_NOTIFICATIONS_50,
            "best": best_50,
            "met": best_50 >= TARGET_NOTIFICATIONS_50,
        },
        "ratio_single_to_bare": {
            "target": TARGET_RATIO,
            "best": best_ratio,
            "met": best_ratio >= TARGET_RATIO,
        },
        "p99_ms_at_fixed_rate": {
            "target": TARGET_P99_MS,
            "best": best_p99,
            "met": best_p99 < TARGET_P99_MS,
        },
    }


def print_table(workers: int, run: dict[str, Any]) -> None:
    print(f"-- uvicorn workers: {workers}")
    for name in ("bare_1", "bare_50", "webhook_1", "webhook_50"):
        r = run[name]
        print(
            f"  {name:<11} {r['requests_per_s']:>7} req/s {r['notifications_per_s']:>8} notif/s"
            f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  cpu {r['cpu_cores']}"
            + (f"  stored_ok={r['stored_ok']}" if "stored_ok" in r else "")
        )
    f = run["fixed_rate"]
    print(
        f"  fixed {f['rate']:.0f}/s: achieved {f['achieved_per_s']}/s  p50 {f['p50_ms']} ms"
        f"  p99 {f['p99_ms']} ms  max {f['max_ms']} ms  stored_ok={f['stored_ok']}"
    )
    print(f"  single-item / bare = {run['ratio_single_to_bare']}", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve-bare"]:
        serve_bare(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=float, default=1000, help="fixed-rate requests/s")
    args = parser.parse_args(argv)

    payloads = Payloads()
    item_bytes = len(payloads.body("x", 0, 50)) / 50
    runs: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with RedisServer() as redis:
        for workers in args.workers:
            runs[str(workers)] = bench_workers(workers, redis, payloads, args)
            print_table(workers, runs[str(workers)])
    lost = sum(r[k]["lost"] for r in runs.values() for k in ("webhook_1", "webhook_50"))
    figures = {
        "benchmark": "webhook",
        "machine": machine(),
        "seconds": args.seconds,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "item_bytes": round(item_bytes),
        "runs": runs,
        "targets": summary(runs),
        "lost": lost,
        "stored_ok": all(
            r[k]["stored_ok"]
            for r in runs.values()
            for k in ("webhook_1", "webhook_50", "fixed_rate")
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    emit(figures)
    return 0 if figures["stored_ok"] else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main(sys.argv[1:]))
