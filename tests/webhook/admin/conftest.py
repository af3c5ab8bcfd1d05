"""Fixtures of the status page's tests: the real app over real HTTP, a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.fernet import Fernet

from core.settings import MappingSettings, load_settings
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from webhook.app import create_app
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import PresenceUpdate, process

ADMIN_KEY = "admin-key-for-tests-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}
T = "contoso"
USERS = 'pbx_users = [{username = "alice", graph_id = "g-alice"}, {username = "bob"}]\n'
RULES = compile_rules(MappingSettings(preset="simple"))


@pytest.fixture
def bridge(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., str]]:
    """Serve the real app for a tenants file; returns its base URL."""
    served: list[ServedApp] = []

    def start(
        *,
        admin_key: str | None = ADMIN_KEY,
        users: str = USERS,
        pbx: str = 'adapter = "builtin"',
        **more_env: str,
    ) -> str:
        env = more_env | {
            "PRESENCE_BRIDGE_REDIS_URL": redis_url,
            "PRESENCE_BRIDGE_CACHE_KEY": Fernet.generate_key().decode(),
            secret_env(T, "CLIENT_SECRET"): "client-secret",
        }
        if admin_key is not None:
            env["PRESENCE_BRIDGE_ADMIN_API_KEY"] = admin_key
        extra = 'service_accounts = ["svc@contoso.test"]\n' + users
        settings = load_settings(write_env(tmp_path, tenant_toml(T, extra=extra, pbx=pbx), **env))
        app = ServedApp(create_app(settings)).__enter__()
        served.append(app)
        return app.url

    yield start
    for app in served:
        app.__exit__(None, None, None)


@contextmanager
def logged_in(url: str) -> Iterator[httpx.Client]:
    """A browser-like client holding a session (the cookie jar keeps it)."""
    with httpx.Client(base_url=url) as client:
        response = client.post("/admin/login", data={"key": ADMIN_KEY})
        assert response.status_code == 303, response.text
        yield client


def form_token(client: httpx.Client) -> str:
    """The token the status page put in its forms for this client's session."""
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text)
    assert found is not None, "the page carries no form token"
    return found.group(1)


def run_pipeline(client: redis.Redis, graph_id: str, availability: str, sequence: str) -> None:
    """The worker's own pipeline and delivery, with the builtin adapter (it writes the stream)."""
    result = process(
        client,
        T,
        RULES,
        0.0,
        [PresenceUpdate(graph_id, availability, availability, sequence)],
        static_links={"g-alice": ["alice"]},
    )
    deliver(client, T, BuiltinAdapter(client, T), [c.user for c in result.changes])
