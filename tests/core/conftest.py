"""The harness of the core auth tests: emulated Entra tenants (`Site`) and GraphTokens."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from core.graph_tokens import GraphTokens
from core.settings import Settings, load_settings
from emulator.control import ControlClient
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from emulator.server import EmulatorServer
from tests.emulator.conftest import (  # noqa: F401 - fixtures
    ALL_ROLES,
    control,
    emulator,
    emulator_factory,
    make_certificate,
)

# msal treats a token with under 5 minutes left as expired (on the wall clock): with this
# lifetime every delegated call goes to the emulator, whose clock decides what is valid.
SHORT_TOKEN_LIFETIME = 240


class FakeClock:
    """The bridge's clock, moved by the test (the emulator has its own)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    """One emulated Entra tenant and the bridge settings that point at it."""

    server: EmulatorServer
    control: ControlClient
    tenant_id: str
    client_id: str
    secret: str
    accounts: dict[str, str]  # upn -> emulator user id
    passwords: dict[str, str]
    settings: Settings
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def name(self) -> str:
        return self.settings.tenants[0].name

    def auth(self, redis_client: redis.Redis, **kwargs: object) -> GraphTokens:
        return GraphTokens(self.settings, redis_client, clock=self.clock, **kwargs)  # type: ignore[arg-type]


def make_site(
    server: EmulatorServer,
    ctl: ControlClient,
    tmp_path: Path,
    redis_url: str,
    *,
    public_base_url: str = "https://bridge.example.test",
    certificate: bool = False,
    accounts: int = 1,
    extra_users: int = 0,
    cache_key: str | None = None,
    admin_key: str = "",
    **more_env: str,
) -> Site:
    tenant_id = ctl.seed_tenant(str(uuid.uuid4()))
    secret = uuid.uuid4().hex
    cert = make_certificate() if certificate else None
    app = ctl.seed_app(
        tenant_id,
        secret=None if certificate else secret,
        certificate_pem=cert.certificate_pem if cert else None,
        redirect_uris=[public_base_url + "/oauth/callback"],
        roles=ALL_ROLES,
    )
    upns: dict[str, str] = {}
    passwords: dict[str, str] = {}
    for n in range(accounts + extra_users):
        upn = f"svc{n}-{uuid.uuid4().hex[:6]}@contoso.test"
        passwords[upn] = uuid.uuid4().hex
        upns[upn] = ctl.add_service_account(tenant_id, upn, passwords[upn], f"Service {n}")
    configured = list(upns)[:accounts]
    extra = f"service_accounts = {configured!r}\n".replace("'", '"')
    if cert is not None:
        key_path = tmp_path / "app.key"
        key_path.write_text(cert.private_key_pem)
        extra += f'[tenants.certificate]\nprivate_key_path = "{key_path}"\n'
        extra += f'thumbprint = "{cert.thumbprint}"\n'
    toml = tenant_toml(
        "contoso",
        extra=extra,
        tenant_id=tenant_id,
        client_id=app["client_id"],
        login=server.base_url,
        graph=server.base_url,
        public=public_base_url,
    )
    env = more_env | {
        "PRESENCE_BRIDGE_REDIS_URL": redis_url,
        "PRESENCE_BRIDGE_CA_BUNDLE": str(server.ca_path),
        "PRESENCE_BRIDGE_CACHE_KEY": cache_key or Fernet.generate_key().decode(),
    }
    if admin_key:
        env["PRESENCE_BRIDGE_ADMIN_API_KEY"] = admin_key
    if cert is None:
        env[secret_env("contoso", "CLIENT_SECRET")] = secret
    settings = load_settings(write_env(tmp_path, toml, **env))
    return Site(server, ctl, tenant_id, app["client_id"], secret, upns, passwords, settings)


def sign_in(site: Site, auth: GraphTokens, account: str) -> None:
    """Sign a service account in the way a browser would, without the web process."""
    auth_uri = auth.start_sign_in(site.name, account)
    auth.finish_sign_in(site.control.sign_in(auth_uri, submit=False))


def signed_in(site: Site, auth: GraphTokens) -> str:
    """Sign in the site's only service account; returns it."""
    (account,) = site.accounts
    sign_in(site, auth, account)
    return account


@pytest.fixture
def site(
    emulator: EmulatorServer,  # noqa: F811 - the fixture imported above
    control: ControlClient,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    redis_url: str,
) -> Site:
    return make_site(emulator, control, tmp_path, redis_url)


@pytest.fixture
def private_site_factory(
    emulator_factory: Callable[..., EmulatorServer],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    redis_url: str,
) -> Iterator[Callable[..., Site]]:
    """Sites on their own emulator, whose clock and settings the test may change."""
    controls: list[ControlClient] = []

    def make(*, short_tokens: bool = True, **options: Any) -> Site:
        server = emulator_factory()
        controls.append(server.control())
        if short_tokens:
            controls[-1].update_settings(access_token_lifetime=SHORT_TOKEN_LIFETIME)
        return make_site(server, controls[-1], tmp_path, redis_url, **options)

    yield make
    for private_control in controls:
        private_control.close()


@pytest.fixture
def private_site(private_site_factory: Callable[..., Site]) -> Site:
    """A site on its own emulator with short-lived access tokens."""
    return private_site_factory()


@pytest.fixture
def auth_factory(redis_client: redis.Redis) -> Iterator[Callable[..., GraphTokens]]:
    made: list[GraphTokens] = []

    def make(site: Site, **kwargs: object) -> GraphTokens:
        made.append(site.auth(redis_client, **kwargs))
        return made[-1]

    yield make
    for auth in made:
        auth.close()
