"""The whole bridge under an office-day load, with a fault proxy on each of its wires.

`ChaosSite` runs a private Redis, the Graph emulator, an HTTP PBX (`tests/pbx_server.py`) and
the bridge's own processes as the Procfile starts them: `python -m webhook`, `python -m
workers`, `python -m subscriptions`. The bridge reaches Redis, Graph (login too) and the PBX
only through `FaultProxy`s; Graph posts its notifications to the web process directly. The
test's own view (Redis, the emulator's world, the PBX's log) goes around the proxies.

`OfficeDay` plays `emulator.scenario.office_day` into the emulator, compressed in time, so
Graph sends real change notifications. `Tally` counts what a scenario did and checks
convergence: every user's PBX profile is the mapping of their latest Teams presence.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import redis
from rq import Worker

from core.graph_tokens import GraphTokens
from core.state import subscriptions as sub_state
from core.state.subscriptions import SubscriptionRecord
from emulator import presence
from emulator.demo import ScenarioRunner
from emulator.harness.bridge import TENANT, BridgeSite
from emulator.harness.faultproxy import FaultProxy
from emulator.harness.processes import ROOT, Service, private_env, wait_for
from emulator.harness.redis_server import RedisServer
from emulator.scenario import Action
from emulator.server import EmulatorServer
from tests.pbx_server import PbxServer
from workers.mapping import RuleSet, compile_rules

T = TypeVar("T")
USERS = 30
# The office day (6 changes per user per hour) at this speed: about 20 changes a second for
# 30 users, the first sign-ins within a few seconds.
SPEED = 400.0
PBX_TIMEOUT_SECONDS = 2
CONVERGE_DEADLINE = 90.0  # seconds after the last change; Graph's own latency bound is 1 min
POLL_SECONDS = 0.2
FIGURES = ROOT / ".run" / "chaos" / "figures.json"

PBX_PATH = "/generic/users/{user}/profile"


def pbx_toml(port: int) -> str:
    """The http adapter with one templated write: PUT the profile name per user."""
    return f"""adapter = "http"
[tenants.pbx.options]
base_url = "http://127.0.0.1:{port}"
timeout_seconds = {PBX_TIMEOUT_SECONDS}
[tenants.pbx.options.actions.apply_profile]
method = "PUT"
url = "/generic/users/$user/profile"
json = {{ profile = "$profile" }}
"""


def wait_until(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll `check` until truthy; the bridge and the emulator signal nothing we could await."""
    return wait_for(check, what, timeout, poll=POLL_SECONDS)


class OfficeDay(ScenarioRunner):
    """The emulator's office day, with the time of every user's latest change remembered."""

    def __init__(self, emulator: EmulatorServer, tenant_id: str, user_ids: list[str]) -> None:
        super().__init__(
            emulator.world, tenant_id, user_ids, speed=SPEED, wait_for_subscription=False
        )
        self.last_change: dict[str, float] = {}  # Graph user id -> emulated time of the change
        self.changed = threading.Event()

    def apply(self, action: Action) -> None:
        super().apply(action)
        self.last_change[action.user_id] = self.world.clock.now()
        self.changed.set()

    def wait_changes(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` more changes were made (a fault lasts for so many changes)."""
        target = self.applied + count
        wait_until(lambda: self.applied >= target, f"{count} presence changes", timeout)


@dataclass
class Figures:
    """One scenario's outcome, as docs/RELIABILITY.md reports it."""

    scenario: str
    sent: int = 0  # presence changes made in Teams (the emulator)
    acknowledged: int = 0  # notification items the web process answered with a 2xx
    refused: int = 0  # notification POSTs answered otherwise or not at all (Graph retries)
    applied: int = 0  # writes the PBX accepted
    duplicated: int = 0  # accepted writes that repeated the user's profile
    lost: int = 0  # users whose latest change was acknowledged, not applied at the deadline
    fault_seconds: float = 0.0
    converge_seconds: float | None = None  # from the last change to every user converged
    recovered_seconds: float | None = None  # from the fault's end to every user converged
    notes: dict[str, Any] = field(default_factory=dict)
    # Made when the fault ends, so the recovery is timed from here.
    made_at: float = field(default_factory=time.monotonic, repr=False)

    def line(self) -> str:
        took = "never" if self.converge_seconds is None else f"{self.converge_seconds:.1f} s"
        return (
            f"chaos {self.scenario}: sent {self.sent}, acknowledged {self.acknowledged}, "
            f"refused {self.refused}, applied {self.applied}, duplicated {self.duplicated}, "
            f"lost {self.lost}, fault {self.fault_seconds:.1f} s, converged in {took}"
        ) + ("" if self.recovered_seconds is None else f", {self.recovered_seconds} s after it")

    def save(self) -> None:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        found: dict[str, Any] = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        figures = {k: v for k, v in asdict(self).items() if k != "made_at"}
        found[self.scenario] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        FIGURES.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


class ChaosSite:
    """One tenant, USERS users linked to PBX users u00.., the bridge behind three proxies."""

    def __init__(self, directory: Path, *, env: dict[str, str] | None = None) -> None:
        self._cleanups: list[Callable[[], None]] = []
        self.redis_server = self._keep(RedisServer().start(), self._stop_redis)
        self.redis = redis.Redis(port=self.redis_server.port)
        self.redis_proxy = self._keep(FaultProxy(self.redis_server.port, name="redis").start())
        self.emulator = self._keep(EmulatorServer().start())
        self.graph_proxy = self._keep(FaultProxy(self.emulator.port, name="graph").start())
        self.pbx = PbxServer()
        self.pbx.start()
        self._cleanups.append(self.pbx.stop)
        self.pbx_proxy = self._keep(FaultProxy(self.pbx.port, name="pbx").start())
        self.usernames = [f"u{n:02d}" for n in range(USERS)]
        self.site = BridgeSite(
            self.emulator,
            self.redis,
            f"redis://127.0.0.1:{self.redis_proxy.port}/0",
            directory,
            users=USERS,
            pbx_users=self.usernames,
            pbx=pbx_toml(self.pbx_proxy.port),
            graph_base_url=f"https://127.0.0.1:{self.graph_proxy.port}",
            env={
                "PRESENCE_BRIDGE_RECONCILE_EVERY": "5",
                "PRESENCE_BRIDGE_PBX_RECONCILE_EVERY": "5",
                "PRESENCE_BRIDGE_COALESCE_WINDOW_MS": "20",
                **(env or {}),
            },
        )
        self._cleanups.append(self.site.close)
        self.user_of = {graph_id: user for user, graph_id in self.site.links.items()}
        self.rules: RuleSet = compile_rules(self.site.settings.tenants[0].mapping)
        self.account = self.site.accounts[0]
        self.web: Service | None = None
        self.workers: list[Service] = []
        self.clocks: list[Service] = []
        self.load = OfficeDay(self.emulator, self.site.tenant_id, list(self.site.graph_ids))

    def _keep(self, thing: T, stop: Callable[[], None] | None = None) -> T:
        self._cleanups.append(stop or thing.stop)  # type: ignore[attr-defined]
        return thing

    def _stop_redis(self) -> None:
        self.redis.close()
        self.redis_server.stop()

    # -- bringing it up ------------------------------------------------------------------------

    def start(self, *, workers: int = 1, clocks: int = 1) -> ChaosSite:
        """Sign the service account in, start the processes, let the clock subscribe."""
        with GraphTokens(self.site.settings, self.redis) as auth:
            self.site.sign_in(auth, self.account)
        self.web = self._keep(self.site.start_web_process())
        for _ in range(workers):
            self.start_worker()
        for _ in range(clocks):
            self.start_clock()
        wait_until(self.live_subscription, "the clock to subscribe", 30)
        # A new subscription owes a resync sweep; it reads every user. Let it pass first, or
        # it would repair whatever a scenario's fault lost and hide the loss.
        wait_until(self._first_sweep_done, "the first sweep", 30)
        self.load.start()
        self._cleanups.append(self.load.stop)
        return self

    def _first_sweep_done(self) -> bool:
        # The clock asks for the sweep just after it saves the record: give it a moment.
        record = self.subscription_record()
        return (
            record is not None
            and time.time() > record.created_at + 1.0
            and not sub_state.sweep_owed(self.redis, TENANT)
        )

    def start_worker(self) -> Service:
        """One more `python -m workers`, ready once RQ lists it among the workers."""
        before = {w.name for w in Worker.all(connection=self.redis)}
        service = Service(
            [sys.executable, "-m", "workers"],
            private_env(self.site.env, inherit=False),
            lambda: bool({w.name for w in Worker.all(connection=self.redis)} - before),
            "a worker",
        )
        self.workers.append(self._keep(service))
        return service

    def start_clock(self) -> Service:
        service = Service(
            [sys.executable, "-m", "subscriptions"],
            private_env(self.site.env, inherit=False),
            lambda: True,
            "a clock",
        )
        self.clocks.append(self._keep(service))
        return service

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - the rest must still be stopped
                print(f"chaos cleanup: {exc!r}")

    # -- what the emulator and the PBX show ------------------------------------------------------

    def live_subscription(self) -> str | None:
        now = self.emulator.world.clock.now()
        with self.emulator.world.lock:
            live = [
                s.id
                for s in self.emulator.world.subscriptions.values()
                if s.tenant_id == self.site.tenant_id and s.expiration > now
            ]
        return live[0] if len(live) == 1 else None

    def live_subscriptions(self) -> list[str]:
        now = self.emulator.world.clock.now()
        with self.emulator.world.lock:
            return [
                s.id
                for s in self.emulator.world.subscriptions.values()
                if s.tenant_id == self.site.tenant_id and s.expiration > now
            ]

    def teams_pair(self, graph_id: str) -> tuple[str, str]:
        world = self.emulator.world
        with world.lock:
            state = world.tenant(self.site.tenant_id).presence.get(graph_id)
            shown = presence.presence_json(graph_id, state)
        return str(shown["availability"]), str(shown["activity"])

    def expected_profiles(self) -> dict[str, str]:
        """PBX user -> the profile their Teams presence maps to (users the mapping leaves
        unchanged, such as those not signed in yet, are not judged)."""
        wanted = {}
        for graph_id, user in self.user_of.items():
            profile = self.rules.decide(*self.teams_pair(graph_id)).profile
            if profile is not None:
                wanted[user] = profile
        return wanted

    def pbx_profiles(self) -> dict[str, str]:
        shown: dict[str, str] = {}
        for write in list(self.pbx.generic_writes):
            user = write.path.rsplit("/", 2)[-2]
            shown[user] = str(write.json()["profile"])
        return shown

    def behind(self) -> dict[str, tuple[str, str | None]]:
        """Users whose PBX profile differs from their Teams presence: (wanted, shown)."""
        shown = self.pbx_profiles()
        return {
            user: (want, shown.get(user))
            for user, want in self.expected_profiles().items()
            if shown.get(user) != want
        }

    # -- faults the proxies cannot make ------------------------------------------------------------

    def freeze_redis(self) -> None:
        os.kill(self.redis_server.pid, signal.SIGSTOP)

    def thaw_redis(self) -> None:
        os.kill(self.redis_server.pid, signal.SIGCONT)

    def restart_redis_empty(self) -> None:
        """Gone and back on the same port with nothing in it, as a restart without persistence."""
        self.redis_server.stop()
        self.redis_server.start()

    def subscription_record(self) -> SubscriptionRecord | None:
        return sub_state.load(self.redis, TENANT).get(self.account)

    def make_renewal_due(self) -> SubscriptionRecord:
        """Move the bridge's record of the subscription to ten minutes before its end, as
        after fifty minutes of running; Graph's side keeps its own expiry."""
        record = self.subscription_record()
        assert record is not None, "the clock holds no subscription"
        due = replace(record, expires_at=time.time() + 600)
        sub_state.save(self.redis, due)
        return due

    def renewed_since(self, moment: float) -> bool:
        record = self.subscription_record()
        return record is not None and record.renewed_at >= moment

    def process_report(self) -> dict[str, str]:
        """Which of the bridge's processes still run, and the end of each one's output."""
        services = {"web": [self.web] if self.web else [], "worker": self.workers,
                    "clock": self.clocks}  # fmt: skip
        report = {}
        for kind, running in services.items():
            for n, service in enumerate(running):
                code = service.proc.poll()
                state = "running" if code is None else f"exited {code}"
                report[f"{kind}{n}"] = f"{state}: {service.output()[-800:]}"
        return report

    def revoke_account(self) -> None:
        """The account's refresh tokens revoked, and its subscription's token run out, so
        Graph holds the notifications and asks for reauthorization (as an hour later)."""
        self.site.control.revoke_user(self.site.tenant_id, self.site.account_ids[0])
        sid = self.live_subscription()
        assert sid is not None, "no live subscription to take the token of"
        world = self.emulator.world
        with world.lock:
            world.subscriptions[sid].token_expires_at = world.clock.now()
        self.site.control.request(
            "POST", f"/subscriptions/{sid}/lifecycle", {"lifecycleEvent": "reauthorizationRequired"}
        )

    # -- the scenario's outcome ------------------------------------------------------------------

    def tally(self, scenario: str) -> Figures:
        figures = Figures(scenario, sent=self.load.applied)
        acked_at: dict[str, float] = {}  # Graph user id -> last acknowledged POST naming them
        with self.emulator.world.lock:
            deliveries = list(self.emulator.world.deliveries)
        for delivery in deliveries:
            if delivery.kind != "notification":
                continue
            items = delivery.body.get("value", [])
            if delivery.status is None or not 200 <= delivery.status < 300:
                figures.refused += 1
                continue
            figures.acknowledged += len(items)
            for item in items:
                uid = str(item.get("resourceData", {}).get("id", ""))
                acked_at[uid] = max(acked_at.get(uid, 0.0), delivery.sent_at)
        last: dict[str, str] = {}
        for write in list(self.pbx.generic_writes):
            user, profile = write.path.rsplit("/", 2)[-2], str(write.json()["profile"])
            figures.applied += 1
            figures.duplicated += last.get(user) == profile
            last[user] = profile
        behind = self.behind()
        figures.lost = sum(
            1
            for uid, user in self.user_of.items()
            if user in behind and acked_at.get(uid, -1.0) >= self.load.last_change.get(uid, 0.0)
        )
        if behind:
            figures.notes["behind"] = {u: list(v) for u, v in sorted(behind.items())}
        return figures

    def under_fault(
        self, scenario: str, inject: Callable[[], Callable[[], None]], warm_up: int, during: int
    ) -> Figures:
        """`warm_up` changes, then `inject` (it returns the restore) for `during` changes; the
        load stops as the fault is lifted (a later change would hide a lost one)."""
        self.load.wait_changes(warm_up)
        began = time.monotonic()
        restore = inject()
        try:
            self.load.wait_changes(during)
        finally:
            restore()
        return Figures(scenario, fault_seconds=time.monotonic() - began)

    def converge(self, figures: Figures) -> Figures:
        """Stop the load, wait for convergence (deadline CONVERGE_DEADLINE), count, record.

        Scenarios stop the load as the fault ends: a later change of the same user would
        re-read their presence and hide a change lost in the fault."""
        self.load.stop()
        stopped = time.monotonic()
        try:
            wait_until(lambda: not self.behind(), "every PBX profile to match Teams",
                       CONVERGE_DEADLINE)  # fmt: skip
            figures.converge_seconds = round(time.monotonic() - stopped, 1)
            figures.recovered_seconds = round(time.monotonic() - figures.made_at, 1)
        except TimeoutError:
            figures.converge_seconds = None
            figures.notes["processes"] = self.process_report()
        counted = self.tally(figures.scenario)
        counted.fault_seconds = round(figures.fault_seconds, 1)
        counted.converge_seconds = figures.converge_seconds
        counted.recovered_seconds = figures.recovered_seconds
        counted.notes = {**figures.notes, **counted.notes}
        counted.save()
        print(counted.line())
        return counted
