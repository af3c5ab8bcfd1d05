"""The harness of the subscription tests: a tenant wired end to end (`bridge_factory`, `Bridge`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.graph_tokens import GraphTokens
from core.settings import ProcessSettings, Settings, TenantSettings, load_settings
from core.state import links
from emulator.control import ControlClient
from emulator.harness.served import ServedApp
from emulator.server import EmulatorServer
from emulator.world import Subscription
from subscriptions.actions import ActionReport
from subscriptions.reconcile import reconcile
from subscriptions.schedules import Clockwork
from subscriptions.tenant_view import TenantView
from tests.emulator.conftest import ALL_ROLES, emulator_factory  # noqa: F401
from webhook.app import create_app

TENANT = "contoso"


@dataclass
class Bridge:
    """A tenant wired end to end: emulator tenant, signed-in accounts, links, webhook, context."""

    emulator: EmulatorServer
    control: ControlClient
    redis: redis.Redis
    tenant_id: str
    users: list[str]
    accounts: list[str]
    auth: GraphTokens
    settings: Settings
    _make_ctx: Callable[[Settings], TenantView]
    contexts: list[TenantView] = field(default_factory=list)

    @property
    def tenant(self) -> TenantSettings:
        tenant = self.settings.tenant(TENANT)
        assert tenant is not None
        return tenant

    def context(self) -> TenantView:
        ctx = self._make_ctx(self.settings)
        self.contexts.append(ctx)
        return ctx

    def reconcile(self) -> ActionReport:
        return reconcile(self.context())

    def live(self) -> list[Subscription]:
        """Graph's truth: the tenant's unexpired subscriptions."""
        world = self.emulator.world
        now = world.clock.now()
        with world.lock:
            return [
                s for s in world.subscriptions.values()
                if s.tenant_id == self.tenant_id and s.expiration > now
            ]  # fmt: skip

    def account_id(self, upn: str) -> str:
        world = self.emulator.world
        with world.lock:
            users = world.tenants[self.tenant_id].users.values()
            return next(u.id for u in users if u.userPrincipalName.lower() == upn)

    def add_accounts(self, n: int) -> list[str]:
        """More service accounts, signed in; the settings list them too."""
        added = []
        for _ in range(n):
            upn = f"svc-{uuid.uuid4().hex[:8]}@contoso.test"
            self.control.add_service_account(self.tenant_id, upn, uuid.uuid4().hex, "svc")
            added.append(upn)
        tenant = self.tenant.model_copy(
            update={"service_accounts": [*self.tenant.service_accounts, *added]}
        )
        self.replace_settings(Settings(process=self.settings.process, tenants=(tenant,)))
        for upn in added:
            self.sign_in(upn)
        self.accounts += added
        return added

    def replace_settings(self, settings: Settings) -> None:
        for ctx in self.contexts:
            ctx.close()
        self.contexts.clear()
        self.auth.close()  # its keep-alive connections would outlive the emulator
        self.settings = settings
        self.auth = GraphTokens(settings, self.redis)

    def sign_in(self, upn: str) -> None:
        url = self.auth.start_sign_in(TENANT, upn)
        fields = self.control.sign_in(url, submit=False)
        assert self.auth.finish_sign_in(fields) == (TENANT, upn)

    def link(self, user_ids: list[str]) -> None:
        added = {u: [f"pbx-{u[:8]}"] for u in user_ids}
        links.replace(self.redis, TENANT, {**links.read_all(self.redis, TENANT), **added})

    def unlink(self, user_ids: list[str]) -> None:
        kept = links.read_all(self.redis, TENANT)
        links.replace(self.redis, TENANT, {g: u for g, u in kept.items() if g not in user_ids})


def covered(bridge: Bridge) -> dict[str, int]:
    """How many live subscriptions cover each linked user."""
    counts = dict.fromkeys(links.linked_graph_ids(bridge.redis, TENANT), 0)
    for sub in bridge.live():
        for uid in sub.user_ids:
            if uid in counts:
                counts[uid] += 1
    return counts


@pytest.fixture
def web(redis_client: redis.Redis, redis_url: str) -> Iterator[ServedApp]:
    settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url})
    with ServedApp(create_app(settings)) as served:
        yield served


@pytest.fixture
def bridge_factory(
    emulator_factory: Callable[..., EmulatorServer],  # noqa: F811 - the fixture imported above
    redis_client: redis.Redis,
    redis_url: str,
    web: ServedApp,
) -> Iterator[Callable[..., Bridge]]:
    made: list[Bridge] = []

    def make(users: int, accounts: int, **tenant_options: Any) -> Bridge:
        emulator = emulator_factory()
        control = emulator.control()
        tenant_id = control.seed_tenant(str(uuid.uuid4()))
        secret = uuid.uuid4().hex
        app = control.seed_app(tenant_id, secret=secret, roles=ALL_ROLES,
                               redirect_uris=[f"{web.url}/oauth/callback"])  # fmt: skip
        user_ids = control.seed_users(tenant_id, count=users) if users else []
        tenant = TenantSettings(
            name=TENANT, tenant_id=tenant_id, client_id=app["client_id"],
            client_secret=SecretStr(secret), login_base_url=emulator.base_url,  # type: ignore[arg-type]
            graph_base_url=emulator.base_url, public_base_url=web.url,  # type: ignore[arg-type]
            **tenant_options,
        )  # fmt: skip
        process = ProcessSettings(
            redis_url=redis_url, cache_key=SecretStr(Fernet.generate_key().decode()),
            ca_bundle=emulator.ca_path,
        )  # fmt: skip
        settings = Settings(process=process, tenants=(tenant,))

        def make_ctx(current: Settings) -> TenantView:
            assert emulator.ca_path is not None
            tenant_settings = current.tenant(TENANT)
            assert tenant_settings is not None
            return TenantView(
                redis_client, tenant_settings, bridge.auth.tenant(TENANT), bridge.auth.cipher(),
                verify=str(emulator.ca_path), now=emulator.world.clock.now,
            )  # fmt: skip

        bridge = Bridge(emulator, control, redis_client, tenant_id, list(user_ids), [],
                        GraphTokens(settings, redis_client), settings, make_ctx)  # fmt: skip
        bridge.add_accounts(accounts)
        bridge.link(bridge.users)
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        for ctx in bridge.contexts:
            ctx.close()
        bridge.auth.close()
        bridge.control.close()


@pytest.fixture
def clockwork_factory() -> Iterator[Callable[[Bridge], Clockwork]]:
    """The clock's schedules for a bridge, on the emulator's time; their Graph clients closed."""
    made: list[Clockwork] = []

    def make(bridge: Bridge) -> Clockwork:
        work = Clockwork(bridge.settings, bridge.redis, bridge.auth,
                         now=bridge.emulator.world.clock.now)  # fmt: skip
        made.append(work)
        return work

    yield make
    for work in made:
        work.close()
