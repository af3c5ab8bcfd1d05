"""Presence pipeline benchmark (issue 5): Teams change -> PBX profile, end to end.

Starts a private redis-server, the Graph emulator (in this process), the real web process
(`python -m webhook`) and one real worker process (`python -m workers`) with the `builtin`
adapter. Service accounts sign in and hold presence subscriptions (650 users each), as the
clock makes them.

1. Latency: presence changes through the emulator's control API at 10, 100 and 1,000
   changes/s (open loop, each change a different user); for each change, from the
   emulator's change time (its session's `set_at`) to the time the builtin adapter applied
   the profile (`updated_at` of the applied record, written by the worker).
2. Throughput of one worker process: a burst of basic notifications appended to the intake
   stream exactly as the webhook does (so the worker reads presence from the emulator), then
   a burst of presence objects as RQ jobs (the clock's resync path, no Graph read); from the
   first item in to the last profile applied.

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_pipeline.py [--seconds 3] [--burst 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import ROOT, cpu_seconds, emit, machine, percentile

sys.path.insert(0, str(ROOT))


from core.graph_tokens import GraphTokens  # noqa: E402
from core.queue import PRESENCES, queue  # noqa: E402
from core.state import intake, links, pbx  # noqa: E402
from emulator.harness.bridge import TENANT, USERS_PER_SUBSCRIPTION, BridgeSite  # noqa: E402
from emulator.harness.processes import Service  # noqa: E402
from emulator.harness.redis_server import RedisServer  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402

RATES = (10, 100, 1000)
TICK_SECONDS = 0.01  # the open-loop generator sends what is due every 10 ms
CHANGES = (  # Teams pair -> the profile the simple preset maps it to
    ("Busy", "InAMeeting"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
    ("Available", "Available"),
)
TARGET_P99_MS = 250.0
TARGET_UPDATES_PER_SECOND = 2000.0
ITEMS_PER_POST = 100  # Graph sends at most 100 items in one POST
PRESENCES_PER_JOB = 200
MAX_BODY_BYTES = 8 * 1024 * 1024


class Site:
    """The emulated tenant and every bridge process pointed at it."""

    def __init__(self, redis_server: RedisServer, emulator: EmulatorServer, users: int) -> None:
        self.redis = redis_server.client
        self.emulator = emulator
        self.bridge = BridgeSite(
            emulator,
            self.redis,
            redis_server.url(),
            Path(tempfile.mkdtemp(prefix="pb-bench-pipeline-")),
            users=users,
            accounts=-(-users // USERS_PER_SUBSCRIPTION),
            # Graph echoes a bulk subscription's resource (650 ids, ~26 KB) in every item, so
            # a 100-item POST is ~2.7 MB: over the 1 MiB default, which answers 413.
            env={"PRESENCE_BRIDGE_MAX_BODY_BYTES": str(MAX_BODY_BYTES)},
        )
        self.control = self.bridge.control
        self.tenant_id = self.bridge.tenant_id
        self.user_ids = self.bridge.graph_ids
        self.services: list[Service] = []
        self.applied_before = 0  # PBX users the builtin adapter serves, before a run

    def start(self) -> None:
        self.services.append(self.bridge.start_web_process())
        # Every service account signed in, 650 users each, as the clock does.
        with GraphTokens(self.bridge.settings, self.redis) as auth:
            self.bridge.subscribe_all(auth, self.bridge.web_url + "/graph/notifications")
        self.link(self.user_ids, "person")
        self.worker = self.bridge.start_worker()
        self.services.append(self.worker)

    def link(self, graph_ids: list[str], prefix: str) -> list[str]:
        """Graph user -> PBX user links, as the directory sync writes them."""
        names = [f"{prefix}{n:06d}" for n in range(len(graph_ids))]
        added = {g: [name] for g, name in zip(graph_ids, names, strict=True)}
        links.replace(self.redis, TENANT, {**links.read_all(self.redis, TENANT), **added})
        return names

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.bridge.close()


def applied_at(site: Site, names: list[str]) -> dict[str, float]:
    """When the builtin adapter applied each named PBX user's profile (worker's clock)."""
    out: dict[str, float] = {}
    for start in range(0, len(names), 5000):
        part = names[start : start + 5000]
        for name, served in pbx.builtin_profiles(site.redis, TENANT, part).items():
            out[name] = served.updated_at
    return out


def wait_applied(site: Site, names: list[str], timeout: float) -> dict[str, float]:
    """Every named user's applied time, once all are there (or at the deadline)."""
    # Each name is a user the builtin adapter has not served yet, so counting the hash is
    # enough while waiting: reading every record each time would load the Redis measured.
    target = site.applied_before + len(names)
    deadline = time.monotonic() + timeout
    while pbx.builtin_count(site.redis, TENANT) < target:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    site.applied_before = pbx.builtin_count(site.redis, TENANT)
    return applied_at(site, names)


def change_times(site: Site, graph_ids: list[str]) -> dict[str, float]:
    """The emulator's own time of each change: when the Teams session was set."""
    world = site.emulator.world
    with world.lock:
        presences = world.tenant(site.tenant_id).presence
        return {
            g: presences[g].sessions["teams:1"].set_at  # type: ignore[attr-defined]
            for g in graph_ids
        }


def latency_run(
    site: Site, rate: int, seconds: float, users: list[tuple[str, str]]
) -> dict[str, Any]:
    """Open loop: `rate` changes/s for `seconds`, each to a user of `users` (graph id, name)."""
    total = int(rate * seconds)
    batch: list[tuple[str, str]] = users[:total]
    start = time.perf_counter()
    sent = 0
    late = 0.0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            changes = [
                {"id": g, "availability": CHANGES[n % 4][0], "activity": CHANGES[n % 4][1]}
                for n, (g, _) in enumerate(batch[sent:due], start=sent)
            ]
            site.control.request("POST", "/presence", {"changes": changes})
            late = max(late, time.perf_counter() - start - sent / rate)
            sent = due
        next_at = start + sent / rate
        pause = min(TICK_SECONDS, next_at - time.perf_counter())
        if pause > 0:
            time.sleep(pause)
    elapsed = time.perf_counter() - start
    names = [name for _, name in batch]
    applied = wait_applied(site, names, timeout=30)
    changed = change_times(site, [g for g, _ in batch])
    latencies = [(applied[name] - changed[g]) * 1000 for g, name in batch if name in applied]
    return {
        "rate": rate,
        "changes": total,
        "applied": len(applied),
        "send_seconds": round(elapsed, 2),
        "max_send_lag_ms": round(late * 1000, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
    }


def notification_burst(site: Site, count: int) -> dict[str, Any]:
    """Basic notifications into the intake stream, as the webhook appends them."""
    graph_ids = site.control.seed_users(site.tenant_id, count=count, prefix="burst")
    for start in range(0, count, 2000):  # no subscription covers them: no notifications
        site.control.request(
            "POST",
            "/presence",
            {
                "userIds": graph_ids[start : start + 2000],
                "availability": "Busy",
                "activity": "InAMeeting",
            },
        )
    names = site.link(graph_ids, "burst")
    entries = []
    for g in graph_ids:
        item = {
            "subscriptionId": "burst",
            "changeType": "updated",
            "resource": f"communications/presences/{g}",
            "resourceData": {
                "@odata.type": "#microsoft.graph.presence",
                "@odata.id": f"users/{g}/presence",
                "id": g,
            },
            "tenantId": site.tenant_id,
            "userId": g,
        }
        entries.append(intake.Accepted(tenant=TENANT, kind="notification", item=item))
    script = site.redis.register_script(intake.APPEND_SCRIPT)
    return _drain(site, names, lambda: _append_all(site, script, entries))


def _append_all(site: Site, script: Any, entries: list[intake.Accepted]) -> None:
    pipe = site.redis.pipeline(transaction=False)
    for start in range(0, len(entries), ITEMS_PER_POST):
        script(
            keys=list(intake.APPEND_KEYS),
            args=intake.script_args(entries[start : start + ITEMS_PER_POST], {}),
            client=pipe,
        )
    pipe.execute()


def presence_burst(site: Site, count: int) -> dict[str, Any]:
    """Presence objects as RQ jobs of 200, the way the clock's resync sweep hands them over."""
    graph_ids = [str(uuid.uuid4()) for _ in range(count)]
    names = site.link(graph_ids, "sweep")
    now = time.time()
    presences = [
        {
            "id": g,
            "availability": "Away",
            "activity": "Away",
            "sequenceNumber": f"{1:020d}",
            "observedAt": now,
        }
        for g in graph_ids
    ]
    datas = [
        PRESENCES.data(TENANT, presences[i : i + PRESENCES_PER_JOB])
        for i in range(0, count, PRESENCES_PER_JOB)
    ]
    q = queue(site.redis, PRESENCES.queue)
    return _drain(site, names, lambda: q.enqueue_many(datas))


def _drain(site: Site, names: list[str], feed: Any) -> dict[str, Any]:
    pids = site.worker.pids()
    cpu_before = cpu_seconds(pids)
    start = time.time()
    feed()
    fed = time.time() - start
    applied = wait_applied(site, names, timeout=120)
    cpu = cpu_seconds(pids) - cpu_before
    last = max(applied.values()) if applied else start
    seconds = last - start
    return {
        "updates": len(names),
        "applied": len(applied),
        "feed_seconds": round(fed, 2),
        "seconds": round(seconds, 2),
        "updates_per_second": round(len(applied) / seconds) if seconds > 0 else None,
        "worker_cpu_seconds": round(cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per latency rate")
    parser.add_argument("--burst", type=int, default=20_000, help="updates per throughput run")
    args = parser.parse_args()
    warm = 20
    users = warm + sum(int(r * args.seconds) for r in RATES)
    figures: dict[str, Any] = {"bench": "pipeline", "machine": machine()}
    with RedisServer() as redis_server, EmulatorServer() as emulator:
        site = Site(redis_server, emulator, users)
        try:
            site.start()
            pairs = list(zip(site.user_ids, [f"person{n:06d}" for n in range(users)], strict=True))
            latency_run(site, 10, warm / 10, pairs[:warm])  # tokens, JWKS, connections
            offset = warm
            runs = []
            for rate in RATES:
                count = int(rate * args.seconds)
                runs.append(latency_run(site, rate, args.seconds, pairs[offset : offset + count]))
                offset += count
                print(runs[-1], flush=True)
            figures["latency"] = runs
            figures["throughput_notifications"] = notification_burst(site, args.burst)
            print(figures["throughput_notifications"], flush=True)
            figures["throughput_presences"] = presence_burst(site, args.burst)
            print(figures["throughput_presences"], flush=True)
        finally:
            site.stop()
    at_1000 = figures["latency"][-1]
    figures["targets"] = {
        "p99_ms_at_1000_per_s": {
            "target": TARGET_P99_MS,
            "measured": at_1000["p99_ms"],
            "met": at_1000["p99_ms"] < TARGET_P99_MS,
        },
        "updates_per_second_per_worker": {
            "target": TARGET_UPDATES_PER_SECOND,
            "measured": figures["throughput_notifications"]["updates_per_second"],
            "met": (figures["throughput_notifications"]["updates_per_second"] or 0)
            >= TARGET_UPDATES_PER_SECOND,
        },
    }
    emit(figures)


if __name__ == "__main__":
    main()
