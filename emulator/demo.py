"""The demo: a tenant with fixed ids, and a scenario that moves its users' presence over time.

`seed_demo` seeds tenant `demo` with one app and its users through the control API;
`ScenarioRunner` waits for the first live subscription in the tenant, then plays an "office
day" (or a steady rate) through the presence model, so change notifications flow to whoever
subscribed. `speed` compresses the scenario's time only (60: an hour of office day per real
minute); the emulator's clock, token lifetimes and subscription expiry stay on real time, so a
bridge renews and reauthorizes as it would against Microsoft.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from emulator import aggregation as agg
from emulator import presence
from emulator.control import ControlClient
from emulator.scenario import Action, changes_at_rate, office_day
from emulator.world import World

log = logging.getLogger("emulator.demo")

DEMO_TENANT_ID = "demo"
DEMO_CLIENT_ID = "5a1c2e3d-4b6f-4e8a-9c0d-1e2f3a4b5c6d"
DEMO_DOMAIN = "contoso.test"
DEMO_ROLES = ["User.Read.All", "Presence.Read.All", "Presence.ReadWrite.All"]
# Where a bridge started by `make run` receives the sign-in answer (webhook/oauth.py).
DEMO_REDIRECT_URIS = [
    "http://127.0.0.1:8000/oauth/callback",
    "http://localhost:8000/oauth/callback",
]
SECRET_ENV = "EMULATOR_DEMO_CLIENT_SECRET"  # noqa: S105 - a variable name
PASSWORD_ENV = "EMULATOR_DEMO_PASSWORD"  # noqa: S105 - a variable name
USERS_PER_SUBSCRIPTION = 650  # Graph's limit of ids per presence subscription
SCENARIOS = ("office-day", "steady")
TEAMS_SESSION = "teams:1"
_NAMESPACE = uuid.UUID("6f1f2b7e-0c55-4d8e-a3f5-6c1b9d0e2a47")
_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas")
_LAST = ("Adams", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Horvat", "Ito")


def demo_user_id(n: int) -> str:
    """Stable across runs, so a PBX mapping or tenants file made once keeps working."""
    return str(uuid.uuid5(_NAMESPACE, f"user-{n}"))


def demo_users(count: int) -> list[dict[str, str]]:
    users = []
    for n in range(count):
        first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST)) % len(_LAST)]
        nick = f"{first}.{last}{n // (len(_FIRST) * len(_LAST)) or ''}".lower()
        users.append(
            {
                "id": demo_user_id(n),
                "userPrincipalName": f"{nick}@{DEMO_DOMAIN}",
                "displayName": f"{first} {last}",
                "mail": f"{nick}@{DEMO_DOMAIN}",
                "mailNickname": nick,
                "onPremisesSamAccountName": nick,
            }
        )
    return users


def seed_demo(
    control: ControlClient,
    *,
    users: int,
    base_url: str,
    redirect_uris: list[str] | None = None,
) -> dict[str, Any]:
    """Seed the demo tenant; return its ids and credentials (secret and password included).

    The secret and password come from $EMULATOR_DEMO_CLIENT_SECRET / $EMULATOR_DEMO_PASSWORD
    when set, else are generated.
    """
    secret = os.environ.get(SECRET_ENV) or secrets.token_urlsafe(24)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(16)
    control.seed_tenant(DEMO_TENANT_ID)
    control.seed_app(
        DEMO_TENANT_ID,
        client_id=DEMO_CLIENT_ID,
        secret=secret,
        redirect_uris=[
            *(redirect_uris or DEMO_REDIRECT_URIS),
            f"{base_url}/_emulator/callback",
        ],
        roles=DEMO_ROLES,
    )
    people = demo_users(users)
    if people:
        control.seed_users(DEMO_TENANT_ID, people)
    accounts = [
        f"svc-presence-{n + 1}@{DEMO_DOMAIN}"
        for n in range(max(1, math.ceil(users / USERS_PER_SUBSCRIPTION)))
    ]
    for upn in accounts:
        control.add_service_account(DEMO_TENANT_ID, upn, password, "Presence service")
    return {
        "tenant_id": DEMO_TENANT_ID,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": secret,
        "service_accounts": accounts,
        "service_account_password": password,
        "user_ids": [u["id"] for u in people],
        "redirect_uris": redirect_uris or DEMO_REDIRECT_URIS,
        "authority": f"{base_url}/{DEMO_TENANT_ID}",
        "login_base_url": base_url,
        "graph_base_url": base_url,
        "graph_url": f"{base_url}/v1.0",
    }


def scenario_actions(
    name: str, user_ids: list[str], *, rate: float = 10.0, seed: int = 0
) -> Iterator[Action]:
    """`office-day`: eight working hours; `steady`: `rate` changes per second for a day."""
    if name == "office-day":
        return office_day(user_ids, seed=seed)
    if name == "steady":
        return changes_at_rate(user_ids, rate, 24 * 3600.0, seed=seed)
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")


class ScenarioRunner:
    """Plays a scenario into `world` on a thread, `speed` times faster than real time."""

    def __init__(
        self,
        world: World,
        tenant_id: str,
        user_ids: list[str],
        *,
        scenario: str = "office-day",
        speed: float = 1.0,
        rate: float = 10.0,
        wait_for_subscription: bool = True,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        scenario_actions(scenario, [], rate=rate)  # refuse an unknown name now, not in the thread
        self.world = world
        self.tenant_id = tenant_id
        self.user_ids = list(user_ids)
        self.scenario = scenario
        self.speed = speed
        self.rate = rate
        self.wait_for_subscription = wait_for_subscription
        self.applied = 0  # actions played so far
        self.days = 0  # scenario rounds started (an office day repeats with a new seed)
        self.started = threading.Event()  # set when the first action is about to play
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-scenario", daemon=True)

    def start(self) -> ScenarioRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _subscribed(self) -> bool:
        now = self.world.clock.now()
        with self.world.lock:
            return any(
                s.tenant_id == self.tenant_id and s.expiration > now
                for s in self.world.subscriptions.values()
            )

    def _run(self) -> None:
        # No event marks a new subscription, so look twice a second.
        while self.wait_for_subscription and not self._subscribed():
            if self._stop.wait(0.5):
                return
        log.info("scenario %s starts at %sx speed", self.scenario, self.speed)
        self.started.set()
        while not self._stop.is_set():
            actions = scenario_actions(self.scenario, self.user_ids, rate=self.rate, seed=self.days)
            self.days += 1
            begin = time.monotonic()
            for action in actions:
                delay = begin + action.at / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self.apply(action)
            if not self.user_ids:
                return

    def apply(self, action: Action) -> None:
        """One Teams client change; the presence model decides whether subscribers hear of it."""
        pair = (agg.canonical(action.availability), agg.canonical(action.activity))
        presence.set_session(
            self.world, self.tenant_id, action.user_id, TEAMS_SESSION, pair, None, decays=False
        )
        self.applied += 1
