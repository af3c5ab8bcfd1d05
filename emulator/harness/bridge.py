"""The whole bridge wired for real to the Graph emulator: tenant, settings, web, worker.

`BridgeSite(...)` seeds an emulated tenant (an app, service accounts, users) and writes the
tenants file and environment that point the bridge at it, with the web process's port
chosen up front (the app's redirect URI names it). The site then serves the web app (in
this process, or as `python -m webhook`), starts `python -m workers` (and the clock,
`python -m subscriptions`) as the Procfile does, and signs service accounts in and subscribes
their users to presence as the clock would.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from rq import Worker

from core import certificates
from core.cipher import CacheCipher
from core.graph import format_datetime
from core.graph_tokens import GraphTokens
from core.notification_crypto import generate_encryption_certificate
from core.settings import load_settings
from core.state import callstate, coordination
from core.state.coordination import Process
from core.state.subscriptions import register
from emulator.harness.ports import free_port, port_open
from emulator.harness.processes import Service, private_env
from emulator.harness.served import ServedApp
from emulator.harness.tenants import ALL_ROLES, secret_env, tenant_toml, write_env
from emulator.server import EmulatorServer
from webhook.app import create_app

TENANT = "contoso"
PBX_SECRET = "builtin-api-key-" + "k" * 24  # noqa: S105 - a throwaway key for loopback runs
USERS_PER_SUBSCRIPTION = 650  # Graph's limit of ids in one presence subscription
SUBSCRIPTION_MINUTES = 59


class BridgeSite:
    """One emulated tenant and the bridge's settings for it; processes start on request."""

    def __init__(
        self,
        emulator: EmulatorServer,
        redis_client: redis.Redis,
        redis_url: str,
        directory: Path,
        *,
        users: int = 3,
        accounts: int = 1,
        pbx_users: Sequence[str] = (),
        pbx: str = 'adapter = "builtin"',
        rich: bool = False,
        preset: str = "simple",
        hold_seconds: float = 0.0,
        env: Mapping[str, str] | None = None,
        extensions: Mapping[str, str] | None = None,
        graph_base_url: str | None = None,
    ) -> None:
        """`pbx_users` are linked to the first Graph users in the tenants file, in order;
        `extensions` gives some of them a `pbx_users[].extension`. `graph_base_url` points the
        bridge's login and Graph calls elsewhere than the emulator (a fault proxy before it)."""
        self.emulator = emulator
        self.graph_base_url = graph_base_url or emulator.base_url
        self.redis = redis_client
        self.control = emulator.control()
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.tenant_id = self.control.seed_tenant(str(uuid.uuid4()))
        secret = uuid.uuid4().hex
        app = self.control.seed_app(
            self.tenant_id,
            secret=secret,
            roles=ALL_ROLES,
            redirect_uris=[self.web_url + "/oauth/callback"],
        )
        self.client_id: str = app["client_id"]
        self.accounts = [f"svc{n}-{uuid.uuid4().hex[:6]}@contoso.test" for n in range(accounts)]
        self.account_ids = [  # their Graph user ids, for faults such as a revoked sign-in
            self.control.add_service_account(
                self.tenant_id, account, uuid.uuid4().hex, "Presence service"
            )
            for account in self.accounts
        ]
        self.graph_ids = self.control.seed_users(self.tenant_id, count=users, prefix="person")
        self.links = dict(zip(pbx_users, self.graph_ids, strict=False))
        self.extensions = dict(extensions or {})
        self.env = write_env(
            directory,
            self._tenants_toml(pbx, rich, preset, hold_seconds),
            PRESENCE_BRIDGE_REDIS_URL=redis_url,
            PRESENCE_BRIDGE_CA_BUNDLE=str(emulator.ca_path),
            PRESENCE_BRIDGE_CACHE_KEY=Fernet.generate_key().decode(),
            PRESENCE_BRIDGE_PORT=str(self.web_port),
            PRESENCE_BRIDGE_LOG_LEVEL="WARNING",
            **{
                secret_env(TENANT, "CLIENT_SECRET"): secret,
                secret_env(TENANT, "PBX_SECRET"): PBX_SECRET,
                **(env or {}),
            },
        )
        self.settings = load_settings(self.env)

    def _tenants_toml(self, pbx: str, rich: bool, preset: str, hold_seconds: float) -> str:
        accounts = ", ".join(f'"{a}"' for a in self.accounts)
        extra = f"service_accounts = [{accounts}]\nrich_notifications = {str(rich).lower()}\n"
        toml = tenant_toml(
            TENANT,
            extra=extra,
            pbx=pbx,
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            login=self.graph_base_url,
            graph=self.graph_base_url,
            public=self.web_url,
        )
        toml += f'\n[tenants.mapping]\npreset = "{preset}"\nhold_seconds = {hold_seconds}\n'
        for username, graph_id in self.links.items():
            # Static links, as a small site writes them (the directory sync adds the same links).
            toml += f'\n[[tenants.pbx_users]]\nusername = "{username}"\ngraph_id = "{graph_id}"\n'
            if username in self.extensions:
                toml += f'extension = "{self.extensions[username]}"\n'
        return toml

    # -- the bridge's processes -------------------------------------------------------------

    def serve_web(self) -> ServedApp:
        """The web app under uvicorn in this process, on the site's port (`with` it)."""
        return ServedApp(create_app(self.settings), port=self.web_port)

    def start_web_process(self) -> Service:
        """`python -m webhook` as the Procfile runs it; stop() it."""
        return Service(
            [sys.executable, "-m", "webhook"],
            private_env(self.env, inherit=False),
            lambda: port_open(self.web_port),
            "the web process",
        )

    def start_worker(self) -> Service:
        """`python -m workers` as the Procfile runs it, ready once RQ lists it; stop() it."""
        return Service(
            [sys.executable, "-m", "workers"],
            private_env(self.env, inherit=False),
            lambda: bool(Worker.all(connection=self.redis)),
            "the worker",
        )

    def start_clock(self) -> Service:
        """`python -m subscriptions` as the Procfile runs it, ready once it beats; stop() it."""
        return Service(
            [sys.executable, "-m", "subscriptions"],
            private_env(self.env, inherit=False),
            lambda: coordination.alive(self.redis, Process.CLOCK),
            "the clock",
        )

    def start_callstate(self) -> Service:
        """`python -m workers.callstate` as the Procfile runs it, ready once each tenant's
        source leads and is logged in to its PBX (a status written since it started)."""
        started = time.time()
        sources = [(t.name, t.pbx.callstate.source) for t in self.settings.tenants
                   if t.pbx.callstate is not None]  # fmt: skip

        def ready() -> bool:
            found = [callstate.status(self.redis, tenant, source) for tenant, source in sources]
            return all(s is not None and s.connected and s.at >= started for s in found)

        return Service(
            [sys.executable, "-m", "workers.callstate"],
            private_env(self.env, inherit=False),
            ready,
            "the call-state process",
        )

    # -- what the clock does ----------------------------------------------------------------

    def sign_in(self, auth: GraphTokens, account: str) -> None:
        """A service account's sign-in, as the browser and the OAuth callback do it."""
        auth_uri = auth.start_sign_in(TENANT, account)
        auth.finish_sign_in(self.control.sign_in(auth_uri, submit=False))

    def subscribe(
        self,
        auth: GraphTokens,
        account: str,
        graph_ids: Sequence[str],
        notification_url: str,
        *,
        rich: bool = False,
    ) -> dict[str, Any]:
        """One presence subscription for `graph_ids`, registered so the webhook accepts it."""
        ids = ",".join(f"'{i}'" for i in graph_ids)
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
                self.redis,
                CacheCipher(self.settings.process.cache_key),
                TENANT,
                certificates.Certificate(certificate_id, certificate, time.time()),
                pem,
            )
            body |= {
                "includeResourceData": True,
                "encryptionCertificate": certificate,
                "encryptionCertificateId": certificate_id,
            }
        with auth.tenant(TENANT).graph_client(account) as graph:
            created = graph.create_subscription(body)
        register(self.redis, str(created["id"]), TENANT, client_state)
        return created

    def subscribe_all(self, auth: GraphTokens, notification_url: str) -> None:
        """Sign every service account in and give each up to 650 users, in order."""
        for n, account in enumerate(self.accounts):
            self.sign_in(auth, account)
            chunk = self.graph_ids[n * USERS_PER_SUBSCRIPTION : (n + 1) * USERS_PER_SUBSCRIPTION]
            self.subscribe(auth, account, chunk, notification_url)

    def close(self) -> None:
        self.control.close()
