"""Soak (issue 11, a benchmark, not CI): an office day for 5,000 users, memory sampled throughout.

The whole bridge runs as the Procfile runs it, wired to the Graph emulator: the web process
(`python -m webhook`), one worker (`python -m workers`), the clock (`python -m subscriptions`,
which creates, renews and sweeps the subscriptions itself), the `builtin` PBX adapter, and a
private redis-server. The emulator and the load generator run in this process. Service
accounts are signed in as an operator does; the tenants file links every Graph user to a PBX
user, as a small site writes it.

Warm-up first (the morning, compressed): `--warm-per-user` changes per user (default 50, the
cap of a user's transition list) at `--warm-rate` changes/s, so the hour starts from what a
site holds after a day of work (capped lists and streams full), not from an empty Redis.

Load: `emulator.scenario.office_day` (a seeded day per user; meetings start within a minute
or two of :00 and :30), played in real time from `--start-minute` of the day (default 55, so
the first meeting burst comes five minutes in), after every user's state at that minute has
been set. Every `--sample-seconds`: the RSS of each process (web, worker, clock, this process
with the emulator, Redis) from /proc, Redis INFO memory, key count, intake stream depth and
RQ queue lengths; at every 10-minute mark the keys and bytes per key family. Each change's
end-to-end latency: from the control API call that made it to the builtin adapter's
`updated_at`. At the end every user's PBX profile is compared with the mapping of the
emulator's latest presence.

Progress lines while it runs, raw samples in `--samples-out` (JSON lines), and, last, one
JSON object with the samples summarised and a plateau verdict for Redis memory.

    .venv/bin/python bench/soak_office_day.py [--minutes 60] [--users 5000]
    .venv/bin/python bench/soak_office_day.py --minutes 3 --users 500     # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, cpu_seconds, emit, machine, percentile

sys.path.insert(0, str(ROOT))

from core.graph_tokens import GraphTokens  # noqa: E402
from core.queue import QUEUES, queue  # noqa: E402
from core.state import coordination, intake, links, pbx  # noqa: E402
from core.state import subscriptions as sub_state  # noqa: E402
from core.state.profiles import EVENTS_KEPT  # noqa: E402
from emulator.harness.bridge import TENANT, USERS_PER_SUBSCRIPTION, BridgeSite  # noqa: E402
from emulator.harness.processes import Service, private_env, wait_for  # noqa: E402
from emulator.harness.redis_server import RedisServer  # noqa: E402
from emulator.scenario import MINUTE, Action, office_day  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from workers.mapping import RuleSet, compile_rules  # noqa: E402

TICK_SECONDS = 0.1  # changes due are sent every 100 ms, one control call each
CHECK_SECONDS = 1.0  # how often changes not yet applied are looked up
MARK_SECONDS = 600.0  # Redis memory and the key families at every 10 minutes
DRAIN_SECONDS = 180.0  # after the last change, how long the bridge gets to catch up
SETUP_TIMEOUT = 600.0
SEED_BATCH = 1000
DELIVERIES_KEPT = 100
# The morning before the measured hour, one pair after another so each is a new profile.
WARM_CYCLE = (("Away", "Away"), ("Busy", "InACall"), ("DoNotDisturb", "Presenting"),
              ("Available", "Available"))  # fmt: skip
PLATEAU_SHARE = 0.02  # growth over the last half under 2 % of used_memory is a plateau
PLATEAU_FLOOR_BYTES = 512 * 1024  # ... or under 512 KiB, whichever is larger


def rss_kib(pids: Sequence[int]) -> tuple[int, int]:
    """Summed VmRSS and VmHWM (peak RSS) of processes, in KiB, from /proc/<pid>/status."""
    rss = hwm = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


_ID_SEGMENT = re.compile(r"\d|^[0-9a-f-]{16,}$|^.{25,}$")


def family(key: bytes) -> str:
    """A key's name with its id-like parts starred: `x:tenant:contoso:events:*`."""
    parts = key.decode(errors="replace").split(":")
    return ":".join("*" if _ID_SEGMENT.search(p) else p for p in parts)


@dataclass
class Pending:
    name: str
    profile: str
    sent_at: float  # wall clock just before the control call that made the change
    at: float  # seconds into the run


@dataclass
class Load:
    """The scenario's actions still to send, what each user should show, what is in flight."""

    actions: list[Action]
    name_of: dict[str, str]
    rules: RuleSet
    expected: dict[str, str | None]  # graph id -> profile of the latest change sent
    next_index: int = 0
    sent: int = 0
    unchanged: int = 0  # changes whose profile was the one already shown: nothing to time
    superseded: int = 0  # timed changes overtaken by the user's next change before applied
    pending: dict[str, Pending] = field(default_factory=dict)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds)
    per_minute: dict[int, int] = field(default_factory=dict)

    def profile(self, availability: str, activity: str) -> str | None:
        return self.rules.decide(availability, activity).profile


class Soak:
    """The emulated tenant, every bridge process, and what is sampled from them."""

    def __init__(
        self, redis_server: RedisServer, emulator: EmulatorServer, args: argparse.Namespace
    ) -> None:
        self.args = args
        self.redis_server = redis_server
        self.redis = redis_server.client
        self.emulator = emulator
        self.names = [f"u{n:05d}" for n in range(args.users)]
        accounts = args.accounts or -(-args.users // USERS_PER_SUBSCRIPTION) + 1
        self.workdir = Path(tempfile.mkdtemp(prefix="pb-soak-"))
        self.bridge = BridgeSite(
            emulator, self.redis, redis_server.url(), self.workdir,
            users=args.users, accounts=accounts, pbx_users=self.names,
        )  # fmt: skip
        self.tenant = self.bridge.settings.tenant(TENANT)
        if self.tenant is None:
            raise RuntimeError("the tenants file lost its tenant")
        self.services: dict[str, Service] = {}
        self.samples: list[dict[str, Any]] = []
        self.families: list[dict[str, Any]] = []
        self.started = 0.0

    # -- setup -------------------------------------------------------------------------------

    def warm_up(self) -> dict[str, Any]:
        """The morning, compressed: `--warm-per-user` changes per user at `--warm-rate`.

        A site that has run for a day holds each user's transition list at its cap and its
        capped streams full; the hour is measured from there, not from an empty Redis.
        """
        per_user: int = self.args.warm_per_user
        rate: float = self.args.warm_rate
        graph_ids = self.bridge.graph_ids
        before = self.sample_redis()
        total = per_user * len(graph_ids)
        started = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            if due > sent:
                changes = []
                for n in range(sent, due):
                    pair = WARM_CYCLE[(n // len(graph_ids)) % len(WARM_CYCLE)]
                    user = graph_ids[n % len(graph_ids)]
                    changes.append({"id": user, "availability": pair[0], "activity": pair[1]})
                self.bridge.control.request("POST", "/presence", {"changes": changes})
                sent = due
            time.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        sent_s = time.perf_counter() - started
        final = WARM_CYCLE[((total - 1) // len(graph_ids)) % len(WARM_CYCLE)]
        assert self.tenant is not None
        profile = compile_rules(self.tenant.mapping).decide(*final).profile

        def done() -> bool:
            served = pbx.builtin_profiles(self.redis, TENANT, self.names)
            return all(p.profile == profile for p in served.values()) and len(served) == len(
                self.names
            )

        wait_for(done, "the warm-up's last changes", SETUP_TIMEOUT)
        applied_s = time.perf_counter() - started
        after = self.sample_redis()
        print(f"warm-up: {total} changes sent in {sent_s:.0f} s, applied in {applied_s:.0f} s; "
              f"redis used_memory {before['used_memory'] / 2**20:.1f} -> "
              f"{after['used_memory'] / 2**20:.1f} MiB", flush=True)  # fmt: skip
        return {"changes": total, "rate": rate, "sent_s": round(sent_s, 1),
                "applied_s": round(applied_s, 1), "redis_before": before,
                "redis_after": after}  # fmt: skip

    def idle(self) -> bool:
        """Nothing waiting in the intake stream or an RQ queue (the hour starts quiet)."""
        stream, unacked = intake.depth(self.redis)
        return not stream and not unacked and not any(queue(self.redis, q).count for q in QUEUES)

    def sample_redis(self) -> dict[str, Any]:
        memory: Any = self.redis.info("memory")
        return {
            "used_memory": int(memory["used_memory"]),
            "used_memory_rss": int(memory["used_memory_rss"]),
            "used_memory_peak": int(memory["used_memory_peak"]),
            "fragmentation": float(memory.get("mem_fragmentation_ratio", 0.0)),
            "keys": int(self.redis.dbsize()),
        }

    def plan_load(self) -> Load:
        """Every user's state at the start minute (set now), and the actions of the run."""
        graph_ids = self.bridge.graph_ids
        start = self.args.start_minute * MINUTE
        end = start + self.args.minutes * MINUTE * self.args.speed
        state: dict[str, tuple[str, str]] = {}
        actions: list[Action] = []
        day = office_day(graph_ids, changes_per_hour=self.args.changes_per_hour,
                         hours=max(8.0, end / 3600 + 1), seed=self.args.seed)  # fmt: skip
        for action in day:
            if action.at >= end:
                break
            if action.at < start:
                state[action.user_id] = (action.availability, action.activity)
            else:
                actions.append(action)
        changes = [{"id": g, "availability": a, "activity": b} for g, (a, b) in state.items()]
        for i in range(0, len(changes), SEED_BATCH):
            self.bridge.control.request(
                "POST", "/presence", {"changes": changes[i : i + SEED_BATCH]}
            )
        assert self.tenant is not None
        load = Load(actions, dict(zip(graph_ids, self.names, strict=True)),
                    compile_rules(self.tenant.mapping), {})  # fmt: skip
        for g, (a, b) in state.items():
            load.expected[g] = load.profile(a, b)
        wanted = {load.name_of[g]: p for g, p in load.expected.items() if p is not None}

        def applied() -> bool:
            served = pbx.builtin_profiles(self.redis, TENANT, list(wanted))
            return all(p in served and served[p].profile == w for p, w in wanted.items())

        wait_for(applied, "every user's state at the start minute", SETUP_TIMEOUT)
        wait_for(self.idle, "the queues to drain before the hour", SETUP_TIMEOUT)
        print(f"setup: {len(state)} users set at minute {self.args.start_minute:g}, "
              f"{len(actions)} changes to play", flush=True)  # fmt: skip
        return load

    def start(self) -> None:
        assert self.tenant is not None
        # The emulator keeps its last POSTs whole for inspection (10,000 by default, each up to
        # 100 items that echo a 650-id resource): gigabytes of its own log, not the bridge's.
        self.bridge.control.update_settings(deliveries_kept=DELIVERIES_KEPT)
        # Everyone signed in (Available) before the bridge starts: its first sweep sees them.
        graph_ids = self.bridge.graph_ids
        for i in range(0, len(graph_ids), SEED_BATCH):
            self.bridge.control.request("POST", "/presence", {
                "userIds": graph_ids[i : i + SEED_BATCH],
                "availability": "Available", "activity": "Available",
            })  # fmt: skip
        links.replace(self.redis, TENANT, links.static_links(self.tenant))
        self.services["web"] = self.bridge.start_web_process()
        with GraphTokens(self.bridge.settings, self.redis) as auth:
            for account in self.bridge.accounts:
                self.bridge.sign_in(auth, account)
        self.services["worker"] = self.bridge.start_worker()
        self.services["clock"] = Service(
            [sys.executable, "-m", "subscriptions"],
            private_env(self.bridge.env, inherit=False),
            lambda: coordination.alive(self.redis, coordination.Process.CLOCK),
            "the clock",
        )
        users: int = self.args.users

        def subscribed() -> bool:
            held = sub_state.load(self.redis, TENANT).values()
            return sum(len(r.user_ids) for r in held) >= users

        wait_for(subscribed, "the clock's subscriptions", SETUP_TIMEOUT)
        count = len(sub_state.load(self.redis, TENANT))
        print(f"setup: the clock holds {count} subscriptions for {users} users", flush=True)
        wait_for(lambda: pbx.builtin_count(self.redis, TENANT) >= users,
                 "every user's first profile (the clock's sweep)", SETUP_TIMEOUT)  # fmt: skip
        print("setup: every user has a PBX profile", flush=True)

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        self.bridge.close()

    # -- sampling ----------------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        found = {name: service.pids() for name, service in self.services.items()}
        found["emulator+load"] = [os.getpid()]
        found["redis"] = [self.redis_server.pid]
        return found

    def sample(self, load: Load) -> dict[str, Any]:
        now = time.time()
        procs: dict[str, Any] = {}
        for name, pids in self.pids().items():
            rss, hwm = rss_kib(pids)
            procs[name] = {"rss_kib": rss, "hwm_kib": hwm, "n": len(pids),
                           "cpu_s": round(cpu_seconds(pids), 1)}  # fmt: skip
        queues = {name: queue(self.redis, name).count for name in QUEUES}
        stream, unacked = intake.depth(self.redis)
        row = {
            "t": round(now - self.started, 1),
            "sent": load.sent,
            "procs": procs,
            "redis": self.sample_redis(),
            "intake": {"length": stream, "pending": unacked},
            "queues": queues,
            "in_flight": len(load.pending),
        }
        self.samples.append(row)
        if self.args.samples_out:
            with open(self.args.samples_out, "a") as out:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
        return row

    def key_families(self) -> dict[str, Any]:
        """Keys and bytes (MEMORY USAGE) per key family: where Redis memory sits."""
        counts: dict[str, list[int]] = {}
        batch: list[bytes] = []

        def flush() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key)
            for key, used in zip(batch, pipe.execute(), strict=True):
                entry = counts.setdefault(family(key), [0, 0])
                entry[0] += 1
                entry[1] += int(used or 0)
            batch.clear()

        for key in self.redis.scan_iter(count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                flush()
        flush()
        top = sorted(counts.items(), key=lambda kv: -kv[1][1])
        snapshot = {
            "t": round(time.time() - self.started, 1),
            "families": {name: {"keys": n, "bytes": b} for name, (n, b) in top[:15]},
        }
        self.families.append(snapshot)
        return snapshot

    # -- the run -----------------------------------------------------------------------------

    def send_due(self, load: Load, elapsed: float) -> None:
        scenario_now = self.args.start_minute * MINUTE + elapsed * self.args.speed
        due: list[Action] = []
        while (
            load.next_index < len(load.actions) and load.actions[load.next_index].at <= scenario_now
        ):
            due.append(load.actions[load.next_index])
            load.next_index += 1
        if not due:
            return
        changes = [{"id": a.user_id, "availability": a.availability, "activity": a.activity}
                   for a in due]  # fmt: skip
        sent_at = time.time()
        self.bridge.control.request("POST", "/presence", {"changes": changes})
        minute = int(elapsed // 60)
        load.per_minute[minute] = load.per_minute.get(minute, 0) + len(due)
        load.sent += len(due)
        for action in due:
            profile = load.profile(action.availability, action.activity)
            name = load.name_of[action.user_id]
            if load.pending.pop(name, None) is not None:
                load.superseded += 1
            if profile is None or profile == load.expected.get(action.user_id):
                load.unchanged += 1
            else:
                load.pending[name] = Pending(name, profile, sent_at, elapsed)
            if profile is not None:
                load.expected[action.user_id] = profile

    def check_applied(self, load: Load) -> None:
        if not load.pending:
            return
        names = list(load.pending)
        served = pbx.builtin_profiles(self.redis, TENANT, names)
        for name in names:
            record = served.get(name)
            waiting = load.pending[name]
            applied = record is not None and record.profile == waiting.profile
            if applied and record is not None and record.updated_at >= waiting.sent_at:
                load.latencies.append((waiting.at, record.updated_at - waiting.sent_at))
                del load.pending[name]

    def run(self, load: Load) -> None:
        seconds = self.args.minutes * 60
        self.started = time.time()
        next_check = next_sample = next_mark = 0.0
        while True:
            elapsed = time.time() - self.started
            if elapsed >= seconds:
                break
            self.send_due(load, elapsed)
            if elapsed >= next_check:
                self.check_applied(load)
                next_check += CHECK_SECONDS
            if elapsed >= next_mark:
                self.key_families()
                next_mark += MARK_SECONDS
            if elapsed >= next_sample:
                self.progress(self.sample(load), load)
                next_sample += self.args.sample_seconds
            time.sleep(max(0.0, TICK_SECONDS - (time.time() - self.started - elapsed)))
        deadline = time.monotonic() + DRAIN_SECONDS
        while load.pending and time.monotonic() < deadline:
            self.check_applied(load)
            time.sleep(CHECK_SECONDS)
        self.progress(self.sample(load), load)
        self.key_families()

    def progress(self, row: dict[str, Any], load: Load) -> None:
        mib = {name: round(p["rss_kib"] / 1024, 1) for name, p in row["procs"].items()}
        recent = [s for at, s in load.latencies if at >= row["t"] - 60]
        p99 = percentile(recent, 99) * 1000 if recent else math.nan
        print(
            f"t={row['t']:7.1f}s sent={row['sent']:6d} rss_mib={mib} "
            f"redis_used={row['redis']['used_memory'] / 2**20:.2f}MiB "
            f"rss={row['redis']['used_memory_rss'] / 2**20:.2f}MiB keys={row['redis']['keys']} "
            f"intake={row['intake']['length']}/{row['intake']['pending']} "
            f"queues={sum(row['queues'].values())} in_flight={row['in_flight']} "
            f"p99_last_min={p99:.0f}ms",
            flush=True,
        )

    def converged(self, load: Load) -> dict[str, Any]:
        """Every user's PBX profile against the mapping of the emulator's latest presence."""
        world = self.emulator.world
        with world.lock:
            presences = world.tenant(self.bridge.tenant_id).presence
            truth = {g: (p.availability, p.activity) for g, p in presences.items()}
        served = pbx.builtin_profiles(self.redis, TENANT, self.names)
        matched = skipped = 0
        wrong: list[dict[str, Any]] = []
        for graph_id, name in load.name_of.items():
            pair = truth.get(graph_id)
            expected = load.profile(*pair) if pair else None
            if expected is None:  # Offline and the like: the mapping leaves the PBX alone
                skipped += 1
                continue
            record = served.get(name)
            if record is not None and record.profile == expected:
                matched += 1
            else:
                wrong.append({"user": name, "presence": pair, "expected": expected,
                              "served": record.profile if record else None})  # fmt: skip
        return {"users": len(self.names), "matched": matched, "not_mapped": skipped,
                "mismatched": len(wrong), "examples": wrong[:5], "ok": not wrong}  # fmt: skip


# -- the summary ---------------------------------------------------------------------------


def summarise_series(samples: list[dict[str, Any]], pick: Any) -> dict[str, Any]:
    points = [(float(s["t"]), float(pick(s))) for s in samples]
    values = [v for _, v in points]
    half = points[-1][0] / 2 if points else 0.0
    first = [p for p in points if p[0] <= half]
    last = [p for p in points if p[0] >= half]
    return {
        "first": values[0] if values else None,
        "last": values[-1] if values else None,
        "max": max(values) if values else None,
        "slope_first_half_per_min": _round(slope_per_minute(first)),
        "slope_last_half_per_min": _round(slope_per_minute(last)),
        "growth_last_half": (last[-1][1] - last[0][1]) if len(last) > 1 else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def at_marks(samples: list[dict[str, Any]], every: float) -> list[dict[str, Any]]:
    """The sample nearest each mark (0, 10, 20... minutes) and the last one."""
    if not samples:
        return []
    end = samples[-1]["t"]
    marks = [m * every for m in range(int(end // every) + 1)]
    rows = []
    for mark in marks:
        row = min(samples, key=lambda s: abs(s["t"] - mark))
        rows.append(row)
    if rows[-1] is not samples[-1]:
        rows.append(samples[-1])
    return [
        {
            "t": r["t"],
            "minute": round(r["t"] / 60, 1),
            **r["redis"],
            "rss_mib": {n: round(p["rss_kib"] / 1024, 1) for n, p in r["procs"].items()},
        }
        for r in rows
    ]


def latency_by_window(latencies: list[tuple[float, float]], every: float) -> list[dict[str, Any]]:
    """p50/p99 of the changes made in each window (0-10 min, 10-20 min...)."""
    windows: dict[int, list[float]] = {}
    for at, seconds in latencies:
        windows.setdefault(int(at // every), []).append(seconds * 1000)
    return [
        {"from_minute": round(w * every / 60), "changes": len(v),
         "p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1),
         "max_ms": round(max(v), 1)}
        for w, v in sorted(windows.items())
    ]  # fmt: skip


def plateau(samples: list[dict[str, Any]]) -> dict[str, Any]:
    used = summarise_series(samples, lambda s: s["redis"]["used_memory"])
    growth = used["growth_last_half"]
    limit = max(PLATEAU_FLOOR_BYTES, PLATEAU_SHARE * (used["last"] or 0))
    reached = growth is not None and growth < limit
    return {
        "used_memory": used,
        "rule": f"growth of used_memory over the last half < max({PLATEAU_SHARE:.0%} of it, "
        f"{PLATEAU_FLOOR_BYTES // 1024} KiB)",
        "limit_bytes": round(limit),
        "reached": reached,
    }


def summary(soak: Soak, load: Load, convergence: dict[str, Any]) -> dict[str, Any]:
    samples = soak.samples
    procs: dict[str, Any] = {}
    for name in samples[0]["procs"] if samples else []:
        series = summarise_series(samples, lambda s, n=name: s["procs"][n]["rss_kib"])
        procs[name] = {
            "rss_first_kib": series["first"],
            "rss_last_kib": series["last"],
            "rss_max_kib": series["max"],
            "hwm_last_kib": samples[-1]["procs"][name]["hwm_kib"],
            "rss_slope_first_half_kib_per_min": series["slope_first_half_per_min"],
            "rss_slope_last_half_kib_per_min": series["slope_last_half_per_min"],
            "cpu_seconds": round(
                samples[-1]["procs"][name]["cpu_s"] - samples[0]["procs"][name]["cpu_s"], 1
            ),
        }
    latencies = [s * 1000 for _, s in load.latencies]
    seconds = soak.args.minutes * 60
    busiest = max(load.per_minute.values(), default=0)
    return {
        "bench": "soak_office_day",
        "machine": machine(),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "users": soak.args.users,
        "accounts": len(soak.bridge.accounts),
        "subscriptions": len(sub_state.load(soak.redis, TENANT)),
        "minutes": soak.args.minutes,
        "start_minute": soak.args.start_minute,
        "speed": soak.args.speed,
        "changes_per_hour_per_user": soak.args.changes_per_hour,
        "changes": {
            "sent": load.sent,
            "per_second": round(load.sent / seconds, 2),
            "busiest_minute_per_second": round(busiest / 60, 2),
            "timed": len(latencies),
            "unchanged_profile": load.unchanged,
            "superseded": load.superseded,
            "never_applied": len(load.pending),
        },
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p90": round(percentile(latencies, 90), 1),
            "p99": round(percentile(latencies, 99), 1),
            "max": round(max(latencies), 1) if latencies else None,
            "by_10_minutes": latency_by_window(load.latencies, MARK_SECONDS),
        },
        "samples": len(samples),
        "sample_seconds": soak.args.sample_seconds,
        "processes": procs,
        "redis_at_marks": at_marks(samples, MARK_SECONDS),
        "redis_keys": summarise_series(samples, lambda s: s["redis"]["keys"]),
        "redis_used_memory_rss": summarise_series(samples, lambda s: s["redis"]["used_memory_rss"]),
        "plateau": plateau(samples),
        "intake_max": max((s["intake"]["length"] for s in samples), default=0),
        "queues_max": max((sum(s["queues"].values()) for s in samples), default=0),
        "key_families": soak.families,
        "convergence": convergence,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=0,
                        help="service accounts (default: 650 users each, plus one)")  # fmt: skip
    parser.add_argument("--changes-per-hour", type=float, default=5.0, help="per user")
    parser.add_argument("--start-minute", type=float, default=55.0,
                        help="minute of the day to start at (0 = top of an hour)")  # fmt: skip
    parser.add_argument("--speed", type=float, default=1.0,
                        help="scenario minutes per real minute")  # fmt: skip
    parser.add_argument("--warm-per-user", type=int, default=EVENTS_KEPT,
                        help="changes per user before the hour (0: start from empty)")  # fmt: skip
    parser.add_argument("--warm-rate", type=float, default=1000.0, help="warm-up changes/s")
    parser.add_argument("--sample-seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples-out", default=str(ROOT / ".run" / "soak-samples.jsonl"),
                        help="raw samples as JSON lines ('' for none)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.samples_out:
        Path(args.samples_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.samples_out).write_text("")
    setup_started = time.perf_counter()
    with RedisServer() as redis_server, EmulatorServer() as emulator:
        soak = Soak(redis_server, emulator, args)
        try:
            soak.start()
            warm = soak.warm_up() if args.warm_per_user else None
            load = soak.plan_load()
            setup_s = time.perf_counter() - setup_started
            print(f"setup: {setup_s:.0f} s; soak for {args.minutes:g} min", flush=True)
            soak.run(load)
            convergence = soak.converged(load)
            print(f"convergence: {convergence}", flush=True)
            figures = summary(soak, load, convergence)
            figures["setup_s"] = round(setup_s, 1)
            figures["warm_up"] = warm
        finally:
            soak.stop()
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
