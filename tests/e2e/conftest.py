"""The whole bridge, wired for real: Graph emulator, web app, worker process, Redis, a PBX.

`bridge_factory(...)` starts a private emulator and wires the harness's `BridgeSite` to it:
the real web app under uvicorn as the notification URL, `python -m workers` against the same
Redis, the service account signed in with a presence subscription for the users (as the clock
would make it). `Bridge` reads outcomes; helpers wait for them with a deadline.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.graph import GraphClient
from core.graph_tokens import GraphTokens
from core.settings import Settings
from core.state import delivery, intake, pbx, profiles
from core.state.delivery import Desired
from emulator.control import ControlClient
from emulator.harness.bridge import PBX_SECRET, BridgeSite
from emulator.harness.bridge import TENANT as TENANT
from emulator.harness.processes import Service
from emulator.harness.processes import wait_for as wait_for
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env
from emulator.server import EmulatorServer
from tests.ami_fixtures import ami_running, ami_server  # noqa: F401 - the AMI server fixtures

PBX_EVENTS_SECRET = "whsec_" + base64.b64encode(b"pbx-events-secret-" + b"e" * 14).decode()
ADMIN_KEY = "admin-key-" + "a" * 24  # the status page of the wired bridge


class Relay:
    """A notification URL in front of the web app that can tamper with what Graph sends.

    Stands for whoever sits between Graph and the bridge: the handshake passes unchanged,
    notification bodies go through `transform` when one is set.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.served = ServedApp(
            Starlette(routes=[Route("/{path:path}", self._forward, methods=["POST"])])
        )

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        if self.transform is not None and body:
            body = orjson.dumps(self.transform(orjson.loads(body)))
        url = f"{self.target}{request.url.path}"
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                url,
                content=body,
                params=request.query_params,
                headers={"content-type": request.headers.get("content-type", "application/json")},
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )


@dataclass
class Bridge:
    emulator: EmulatorServer
    control: ControlClient
    redis: redis.Redis
    settings: Settings
    auth: GraphTokens
    tenant_id: str
    client_id: str
    users: dict[str, str]  # PBX username -> Graph user id
    web_url: str
    subscription: dict[str, Any] = field(default_factory=dict)
    worker: Service | None = None
    relay: Relay | None = None
    site: BridgeSite | None = None
    services: list[Service] = field(default_factory=list)  # stopped by the factory

    # -- Teams side --------------------------------------------------------------------------

    def set_teams(self, user: str, availability: str, activity: str) -> None:
        """What a Teams client does: change the user's own session."""
        body = {"id": self.users[user], "availability": availability, "activity": activity}
        self.control.request("POST", "/presence", body)

    def set_preferred(self, user: str, availability: str, activity: str) -> None:
        """What setUserPreferredPresence does: a status the user chose by hand."""
        body = {
            "id": self.users[user],
            "availability": availability,
            "activity": activity,
            "preferred": True,
        }
        self.control.request("POST", "/presence", body)

    def graph(self) -> GraphClient:
        """The app's own Graph client (app-only token), to read what Teams shows."""
        return self.auth.tenant(TENANT).graph_client()

    def teams_presence(self, user: str) -> tuple[str, str]:
        with self.graph() as graph:
            found = graph.get(f"/users/{self.users[user]}/presence")
        return str(found["availability"]), str(found["activity"])

    def delivery_idle(self) -> None:
        """Wait until the emulator has nothing queued or in flight for the bridge."""
        assert not self.control.request("GET", "/delivery/idle", timeout="20")["busy"]

    # -- bridge side -------------------------------------------------------------------------

    def desired(self, user: str) -> Desired | None:
        return delivery.load(self.redis, TENANT, [user])[user].desired

    def applied_version(self, user: str) -> int:
        return delivery.load(self.redis, TENANT, [user])[user].applied

    def applied_profiles(self, user: str) -> list[str]:
        """Profiles the adapter applied for `user`, oldest first."""
        events = reversed(profiles.recent_events(self.redis, TENANT, user))
        return [e["profile"] for e in events if e.get("result") == "applied"]

    def decided(self, user: str) -> list[dict[str, Any]]:
        """Teams presences the pipeline acted on for `user`, oldest first."""
        events = reversed(profiles.recent_events(self.redis, TENANT, user))
        return [e["teams"] for e in events if e.get("result") == "decided"]

    def wait_desired(self, user: str, profile: str) -> Desired:
        """Until the desired profile of `user` is `profile`, applied or not."""

        def check() -> Desired | None:
            d = self.desired(user)
            return d if d is not None and d.profile == profile else None

        return wait_for(check, f"{profile!r} decided for {user}")

    def wait_applied(self, user: str, profile: str, what: str = "") -> Desired:
        """Until the desired profile of `user` is `profile` and the PBX adapter applied it."""

        def check() -> Desired | None:
            found = delivery.load(self.redis, TENANT, [user])[user]
            d, applied = found.desired, found.applied
            return d if d is not None and d.profile == profile and applied >= d.version else None

        return wait_for(check, what or f"{profile!r} applied for {user}")

    def builtin_profile(self, user: str) -> str | None:
        found = pbx.builtin_profile(self.redis, TENANT, user)
        return None if found is None else found.profile

    def metrics(self) -> dict[str, int]:
        return intake.counters(self.redis)

    def stop_services(self) -> None:
        for service in self.services:
            service.stop()

    def start_callstate(self) -> Service:
        """`python -m workers.callstate`, ready once its sources lead and are logged in."""
        assert self.site is not None
        service = self.site.start_callstate()
        self.services.append(service)
        return service

    def post_pbx_events(self, *events: dict[str, str]) -> httpx.Response:
        """Signed per Standard Webhooks by the reference library, as a PBX's would sign it."""
        body = orjson.dumps({"tenant": TENANT, "events": list(events)})
        msg_id, now = f"msg_{time.time_ns()}", datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(PBX_EVENTS_SECRET).sign(msg_id, now, body.decode()),
        }
        return httpx.post(f"{self.web_url}/pbx/events", content=body, headers=headers)

    def api(self) -> httpx.Client:
        """A client of the builtin adapter's API, as a PBX would hold one."""
        return httpx.Client(
            base_url=f"{self.web_url}/api/v1/tenants/{TENANT}",
            headers={"Authorization": f"Bearer {PBX_SECRET}"},
        )


BridgeFactory = Callable[..., Bridge]


@pytest.fixture
def bridge_factory(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[BridgeFactory]:
    cleanups: list[Callable[[], None]] = []

    def start(
        *,
        users: tuple[str, ...] = ("alice", "bob", "carol"),
        pbx: str = 'adapter = "builtin"',
        rich: bool = False,
        relay: bool = False,
        preset: str = "simple",
        hold_seconds: float = 0.0,
        coalesce_window_ms: int = 20,
        extensions: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Bridge:
        emulator = EmulatorServer().start()
        cleanups.append(emulator.stop)
        site = BridgeSite(
            emulator,
            redis_client,
            redis_url,
            tmp_path,
            users=len(users),
            pbx_users=users,
            pbx=pbx,
            rich=rich,
            preset=preset,
            hold_seconds=hold_seconds,
            env={
                secret_env(TENANT, "PBX_EVENTS_SECRET"): PBX_EVENTS_SECRET,
                "PRESENCE_BRIDGE_ADMIN_API_KEY": ADMIN_KEY,
                "PRESENCE_BRIDGE_COALESCE_WINDOW_MS": str(coalesce_window_ms),
                **(env or {}),
            },
            extensions=extensions,
        )
        cleanups.append(site.close)
        web = site.serve_web().start()
        cleanups.append(web.stop)
        auth = GraphTokens(site.settings, redis_client)
        cleanups.append(auth.close)
        bridge = Bridge(
            emulator,
            site.control,
            redis_client,
            site.settings,
            auth,
            site.tenant_id,
            site.client_id,
            site.links,
            site.web_url,
            site=site,
        )

        notification_url = site.web_url
        if relay:
            bridge_relay = Relay(site.web_url)
            bridge_relay.served.start()
            cleanups.append(bridge_relay.served.stop)
            notification_url = bridge_relay.served.url
            bridge.relay = bridge_relay
        (account,) = site.accounts
        site.sign_in(auth, account)
        notification_url += "/graph/notifications"
        bridge.subscription = site.subscribe(
            auth, account, list(site.links.values()), notification_url, rich=rich
        )
        worker = site.start_worker()
        cleanups.append(worker.stop)
        bridge.worker = worker
        cleanups.append(bridge.stop_services)  # before the worker and the web process
        return bridge

    yield start
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture
def bridge(bridge_factory: BridgeFactory) -> Bridge:
    """The default wiring: basic notifications, the builtin adapter, the simple preset."""
    return bridge_factory()


def tamper_data_signature(document: dict[str, Any]) -> dict[str, Any]:
    """Flip one bit of every item's dataSignature (the ciphertext is left alone)."""
    for item in document.get("value", []):
        content = item.get("encryptedContent")
        if isinstance(content, dict):
            raw = bytearray(base64.b64decode(content["dataSignature"]))
            raw[0] ^= 0x01
            content["dataSignature"] = base64.b64encode(bytes(raw)).decode()
    return document
