"""The whole bridge, wired for real: Graph emulator, web app, worker process, Redis, a PBX.

`bridge_factory(...)` starts a private emulator with a seeded tenant (app, service account,
users), writes a tenants file pointing login and Graph at it, serves the real web app under
uvicorn as the notification URL, starts `python -m workers` against the same Redis, signs the
service account in and creates a presence subscription for the users through Graph (as the
clock would), registered so the webhook accepts it. Helpers wait for outcomes with a deadline.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import redis
from cryptography.fernet import Fernet
from rq import Worker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core import certificates, keys
from core.auth import Authenticator
from core.graph import GraphClient, format_datetime
from core.notification_crypto import generate_encryption_certificate
from core.queue import queue
from core.settings import Settings, load_settings
from core.state.subscriptions import register
from core.token_cache import CacheCipher
from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.emulator.conftest import ALL_ROLES
from tests.redis_server import free_port
from tests.tenants import secret_env, tenant_toml, write_env
from tests.webserver import ServedApp
from webhook.app import create_app
from webhook.pbx_events import sign
from workers import desired as store

ROOT = Path(__file__).resolve().parents[2]
TENANT = "contoso"
PBX_SECRET = "builtin-api-key-" + "k" * 24  # noqa: S105 - a throwaway key for loopback tests
PBX_EVENTS_SECRET = "pbx-events-secret-" + "e" * 24  # noqa: S105
ADMIN_KEY = "admin-key-" + "a" * 24  # the status page of the wired bridge
WAIT_SECONDS = 30.0
SUBSCRIPTION_MINUTES = 59
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll `check` until it returns something truthy; the bridge offers no event to await."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


class WorkerProcess:
    """`python -m workers` as the Procfile runs it, with the test's environment."""

    def __init__(self, env: dict[str, str], client: redis.Redis) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "workers"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: self._alive() and Worker.all(connection=client), "the worker to start")
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({self.proc.returncode}):\n{self.output()}")
        return True

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # rq's warm shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


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
    auth: Authenticator
    tenant_id: str
    client_id: str
    users: dict[str, str]  # PBX username -> Graph user id
    web_url: str
    subscription: dict[str, Any] = field(default_factory=dict)
    worker: WorkerProcess | None = None
    relay: Relay | None = None

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

    def desired(self, user: str) -> store.Desired | None:
        return store.load(self.redis, TENANT, [user])[user][0]

    def applied_version(self, user: str) -> int:
        return store.load(self.redis, TENANT, [user])[user][1]

    def applied_profiles(self, user: str) -> list[str]:
        """Profiles the adapter applied for `user`, oldest first."""
        events = reversed(store.recent_events(self.redis, TENANT, user))
        return [e["profile"] for e in events if e.get("result") == "applied"]

    def decided(self, user: str) -> list[dict[str, Any]]:
        """Teams presences the pipeline acted on for `user`, oldest first."""
        events = reversed(store.recent_events(self.redis, TENANT, user))
        return [e["teams"] for e in events if e.get("result") == "decided"]

    def wait_desired(self, user: str, profile: str) -> store.Desired:
        """Until the desired profile of `user` is `profile`, applied or not."""

        def check() -> store.Desired | None:
            d = self.desired(user)
            return d if d is not None and d.profile == profile else None

        return wait_for(check, f"{profile!r} decided for {user}")

    def wait_applied(self, user: str, profile: str, what: str = "") -> store.Desired:
        """Until the desired profile of `user` is `profile` and the PBX adapter applied it."""

        def check() -> store.Desired | None:
            d, applied = store.load(self.redis, TENANT, [user])[user]
            return d if d is not None and d.profile == profile and applied >= d.version else None

        return wait_for(check, what or f"{profile!r} applied for {user}")

    def builtin_profile(self, user: str) -> str | None:
        raw = self.redis.hget(keys.builtin_profiles(TENANT), user)
        return None if raw is None else str(orjson.loads(raw)["profile"])

    def metrics(self) -> dict[str, int]:
        raw = self.redis.hgetall(keys.METRICS_HASH)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    def enqueue(self, job: str, queue_name: str, *args: Any) -> None:
        """Enqueue a job as the clock does (by dotted path, JSON arguments)."""
        queue(self.redis, queue_name).enqueue(job, *args)

    def post_pbx_events(self, *events: dict[str, str]) -> httpx.Response:
        body = orjson.dumps({"tenant": TENANT, "events": list(events)})
        stamp = str(int(time.time()))
        headers = {
            "X-Presence-Bridge-Timestamp": stamp,
            "X-Presence-Bridge-Signature": sign(PBX_EVENTS_SECRET.encode(), stamp, body),
        }
        return httpx.post(f"{self.web_url}/pbx/events", content=body, headers=headers)

    def api(self) -> httpx.Client:
        """A client of the builtin adapter's API, as a PBX would hold one."""
        return httpx.Client(
            base_url=f"{self.web_url}/api/v1/tenants/{TENANT}",
            headers={"Authorization": f"Bearer {PBX_SECRET}"},
        )


BridgeFactory = Callable[..., Bridge]


def _tenants_toml(
    *,
    emulator: EmulatorServer,
    tenant_id: str,
    client_id: str,
    public: str,
    account: str,
    users: dict[str, str],
    pbx: str,
    rich: bool,
    preset: str,
    hold_seconds: float,
) -> str:
    extra = f'service_accounts = ["{account}"]\nrich_notifications = {str(rich).lower()}\n'
    toml = tenant_toml(
        TENANT,
        extra=extra,
        pbx=pbx,
        tenant_id=tenant_id,
        client_id=client_id,
        login=emulator.base_url,
        graph=emulator.base_url,
        public=public,
    )
    toml += f'\n[tenants.mapping]\npreset = "{preset}"\nhold_seconds = {hold_seconds}\n'
    for username, graph_id in users.items():
        # Static links, as a small site writes them (the directory sync adds the same links).
        toml += f'\n[[tenants.pbx_users]]\nusername = "{username}"\ngraph_id = "{graph_id}"\n'
    return toml


def _subscribe(bridge: Bridge, account: str, notification_url: str, rich: bool) -> dict[str, Any]:
    """What the clock does for one service account: sign-in, then one subscription."""
    auth_uri = bridge.auth.start_sign_in(TENANT, account)
    bridge.auth.finish_sign_in(bridge.control.sign_in(auth_uri, submit=False))
    ids = ",".join(f"'{i}'" for i in bridge.users.values())
    client_state = secrets.token_urlsafe(32)
    body: dict[str, Any] = {
        "changeType": "updated",
        "notificationUrl": notification_url,
        "resource": f"/communications/presences?$filter=id in ({ids})",
        "expirationDateTime": format_datetime(
            dt.datetime.now(dt.UTC) + dt.timedelta(minutes=SUBSCRIPTION_MINUTES)
        ),
        "clientState": client_state,
    }
    if rich:
        pem, certificate, _ = generate_encryption_certificate()
        certificate_id = "cert-" + uuid.uuid4().hex[:8]
        certificates.add_certificate(
            bridge.redis,
            CacheCipher(bridge.settings.process.cache_key),
            TENANT,
            certificates.Certificate(certificate_id, certificate, time.time()),
            pem,
        )
        body |= {
            "includeResourceData": True,
            "encryptionCertificate": certificate,
            "encryptionCertificateId": certificate_id,
        }
    with bridge.auth.tenant(TENANT).graph_client(account) as graph:
        created = graph.create_subscription(body)
    register(bridge.redis, str(created["id"]), TENANT, client_state)
    return created


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
    ) -> Bridge:
        emulator = EmulatorServer().start()
        cleanups.append(emulator.stop)
        control = emulator.control()
        cleanups.append(control.close)

        web_port = free_port()
        web_url = f"http://127.0.0.1:{web_port}"
        tenant_id = control.seed_tenant(str(uuid.uuid4()))
        secret = uuid.uuid4().hex
        app = control.seed_app(
            tenant_id, secret=secret, roles=ALL_ROLES, redirect_uris=[web_url + "/oauth/callback"]
        )
        account = f"svc-{uuid.uuid4().hex[:8]}@contoso.test"
        control.add_service_account(tenant_id, account, uuid.uuid4().hex, "Presence service")
        graph_ids = control.seed_users(tenant_id, count=len(users), prefix="person")
        linked = dict(zip(users, graph_ids, strict=True))

        toml = _tenants_toml(
            emulator=emulator,
            tenant_id=tenant_id,
            client_id=app["client_id"],
            public=web_url,
            account=account,
            users=linked,
            pbx=pbx,
            rich=rich,
            preset=preset,
            hold_seconds=hold_seconds,
        )
        env = write_env(
            tmp_path,
            toml,
            PRESENCE_BRIDGE_REDIS_URL=redis_url,
            PRESENCE_BRIDGE_CA_BUNDLE=str(emulator.ca_path),
            PRESENCE_BRIDGE_CACHE_KEY=Fernet.generate_key().decode(),
            PRESENCE_BRIDGE_PBX_EVENTS_SECRET=PBX_EVENTS_SECRET,
            PRESENCE_BRIDGE_ADMIN_API_KEY=ADMIN_KEY,
            PRESENCE_BRIDGE_COALESCE_WINDOW_MS=str(coalesce_window_ms),
            PRESENCE_BRIDGE_LOG_LEVEL="WARNING",
            **{
                secret_env(TENANT, "CLIENT_SECRET"): secret,
                secret_env(TENANT, "PBX_SECRET"): PBX_SECRET,
            },
        )
        settings = load_settings(env)
        web = ServedApp(create_app(settings), port=web_port).__enter__()
        cleanups.append(lambda: web.__exit__(None, None, None))
        auth = Authenticator(settings, redis_client)
        cleanups.append(auth.close)
        bridge = Bridge(
            emulator,
            control,
            redis_client,
            settings,
            auth,
            tenant_id,
            app["client_id"],
            linked,
            web_url,
        )

        notification_url = web_url
        if relay:
            bridge_relay = Relay(web_url)
            bridge_relay.served.__enter__()
            cleanups.append(lambda: bridge_relay.served.__exit__(None, None, None))
            notification_url = bridge_relay.served.url
            bridge.relay = bridge_relay
        bridge.subscription = _subscribe(
            bridge, account, notification_url + "/graph/notifications", rich
        )
        worker = WorkerProcess(env, redis_client)
        cleanups.append(worker.stop)
        bridge.worker = worker
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
