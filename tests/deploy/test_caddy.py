"""deploy/caddy/Caddyfile, run: Caddy terminates TLS on loopback in front of `python -m webhook`;
Graph's handshake and a notification from the Graph emulator reach the web process over https."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from core.graph_tokens import GraphTokens
from core.state import intake
from emulator import tls
from emulator.harness.bridge import BridgeSite
from emulator.harness.ports import free_port, port_open
from emulator.harness.processes import Service, wait_for
from emulator.server import EmulatorServer

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


@dataclass
class Proxied:
    site: BridgeSite
    url: str  # https, through Caddy
    tls: tls.TlsFiles


def caddy() -> str:
    found = shutil.which("caddy")
    if found is None:
        raise RuntimeError("caddy is not installed; `make setup` installs it")
    return found


@pytest.fixture
def proxied(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Proxied]:
    files = tls.generate(tmp_path / "proxy-tls")
    # The emulator's deliveries trust the proxy's CA as Graph trusts a public one.
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca_path))
    stops = []
    try:
        emulator = EmulatorServer().start()
        stops.append(emulator.stop)
        site = BridgeSite(emulator, redis_client, redis_url, tmp_path, users=1, pbx_users=["alice"])
        stops.append(site.close)
        stops.append(site.start_web_process().stop)
        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),  # Caddy keeps its data and autosave config under here
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PRESENCE_BRIDGE_SITE": f"https://127.0.0.1:{port}",
            "PRESENCE_BRIDGE_TLS": f"{files.cert_path} {files.key_path}",
            "PRESENCE_BRIDGE_UPSTREAM": f"127.0.0.1:{site.web_port}",
            "CADDY_ADMIN": "off",
            "CADDY_BIND": "127.0.0.1",
            "CADDY_HTTP_PORT": str(free_port()),
            "CADDY_HTTPS_PORT": str(port),
        }
        proxy = Service(
            [caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env,
            lambda: port_open(port),
            "caddy",
        )
        stops.append(proxy.stop)
        yield Proxied(site, f"https://127.0.0.1:{port}", files)
    finally:
        for stop in reversed(stops):
            stop()


def test_graphs_handshake_is_answered_through_the_proxy(proxied: Proxied) -> None:
    token = f"Validation: Testing client application reachability {secrets.token_urlsafe(8)}"
    response = httpx.post(
        f"{proxied.url}/graph/notifications",
        params={"validationToken": token},
        verify=proxied.tls.client_context(),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert response.text == token


def test_a_notification_reaches_the_web_process_through_the_proxy(
    proxied: Proxied, redis_client: redis.Redis
) -> None:
    site = proxied.site
    auth = GraphTokens(site.settings, redis_client)
    try:
        (account,) = site.accounts
        site.sign_in(auth, account)
        # Creating the subscription makes the emulator do the handshake through Caddy too.
        site.subscribe(auth, account, site.graph_ids, f"{proxied.url}/graph/notifications")
    finally:
        auth.close()
    change = {"id": site.graph_ids[0], "availability": "Busy", "activity": "InACall"}
    site.control.request("POST", "/presence", change)
    wait_for(lambda: intake.depth(redis_client)[0] >= 1, "the notification in the intake stream")
    assert intake.counters(redis_client).get("accepted", 0) >= 1
