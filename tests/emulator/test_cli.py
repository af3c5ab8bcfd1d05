"""`python -m emulator` as a separate process: its help, its CA, the demo seed and scenario."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
import requests

from emulator.control import ControlClient
from emulator.delivery import graph_time
from tests.emulator.conftest import GRAPH_DEFAULT
from tests.emulator.graph import password_token, presence_subscription
from tests.emulator.subscriber import running_subscriber

ROOT = Path(__file__).resolve().parents[2]
READY = "Graph emulator ready at "


@dataclass
class Cli:
    base_url: str
    ca_path: Path
    lines: list[str]  # what it printed up to the ready line

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


@contextmanager
def running_cli(*options: str) -> Iterator[Cli]:
    """`python -m emulator --port 0 ...` until the test ends; waits for its ready line."""
    command = [sys.executable, "-m", "emulator", "--port", "0", "--log-level", "warning"]
    process = subprocess.Popen(  # noqa: S603 - our own module
        [*command, *options], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:  # the server prints the ready line once it listens
            lines.append(line.rstrip("\n"))
            if line.startswith(READY):
                break
        assert lines and lines[-1].startswith(READY), f"the emulator exited early: {lines}"
        [ca] = [line.split(": ", 1)[1] for line in lines if line.startswith("CA certificate: ")]
        yield Cli(lines[-1][len(READY) :], Path(ca), lines)
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


@pytest.fixture(scope="module")
def help_text() -> str:
    result = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize(
    "text",
    [
        # every option
        *("--host", "--port", "--seed", "--users", "--scenario", "--speed", "--rate"),
        *("--redirect-uri", "--ca-out", "--demo-out", "--http", "--log-level"),
        # control routes, identity and directory
        *("/tenants/{tid}/apps", "/tenants/{tid}/users", "/service-accounts", "/revoke"),
        *("/require-interaction", "/clock/advance", "/settings", "/tokens"),
        # presence, notifications and faults
        *("/presence/{user_id}", "/subscriptions/{id}/lifecycle", "/deliveries"),
        *("/delivery/health", "/delivery/idle", "/faults/routes", "/faults/delivery"),
    ],
)
def test_help_documents_options_and_control_routes(help_text: str, text: str) -> None:
    assert text in help_text


def test_prints_its_ca_and_serves_discovery_over_tls() -> None:
    with running_cli("--users", "1") as cli:
        url = f"{cli.base_url}/demo/v2.0/.well-known/openid-configuration"
        document = httpx.get(url, verify=cli.context()).json()
    assert document["issuer"] == f"{cli.base_url}/demo/v2.0"
    assert document["token_endpoint"] == f"{cli.base_url}/demo/oauth2/v2.0/token"


def test_demo_out_is_private_and_serves_msal(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    with running_cli("--users", "10", "--demo-out", str(out)) as cli:
        demo = json.loads(out.read_text())
        with requests.Session() as http:
            http.trust_env, http.verify = False, str(cli.ca_path)
            app = msal.ConfidentialClientApplication(
                demo["client_id"],
                client_credential=demo["client_secret"],
                authority=demo["authority"],
                instance_discovery=False,
                http_client=http,
            )
            token = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)["access_token"]
        users = httpx.get(
            f"{demo['graph_url']}/users",
            headers={"Authorization": f"Bearer {token}"},
            verify=cli.context(),
        ).json()["value"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(users) == 11  # ten users and one service account
    assert not any(demo["client_secret"] in line for line in cli.lines)


def test_without_demo_out_the_credentials_are_printed() -> None:
    with running_cli("--users", "1") as cli:
        [seed] = [line for line in cli.lines if line.startswith("demo seed: ")]
    printed: dict[str, Any] = json.loads(seed.removeprefix("demo seed: "))
    assert printed["tenant_id"] == "demo"
    assert {"client_secret", "service_account_password"} <= set(printed)


def test_scenario_notifies_the_service_accounts_subscription(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    options = ("--users", "10", "--scenario", "office-day", "--speed", "3600")
    with (
        running_cli(*options, "--demo-out", str(out)) as cli,
        ControlClient(cli.base_url, cli.ca_path) as control,
        requests.Session() as http,
        running_subscriber() as subscriber,
    ):
        demo = json.loads(out.read_text())
        http.trust_env, http.verify = False, str(cli.ca_path)
        token = password_token(
            control,
            http,
            authority=demo["authority"],
            client_id=demo["client_id"],
            secret=demo["client_secret"],
            username=demo["service_accounts"][0],
            password=demo["service_account_password"],
            redirect_uri=f"{cli.base_url}/_emulator/callback",
        )
        body = presence_subscription(
            demo["user_ids"], subscriber.url(), graph_time(control.clock() + 3600)
        )
        created = httpx.post(
            f"{demo['graph_url']}/subscriptions",
            json=body,
            headers={"authorization": f"Bearer {token}"},
            verify=cli.context(),
        )
        assert created.status_code == 201, created.text
        items = subscriber.wait_items(3, timeout=30)
    assert {i["resourceData"]["id"] for i in items} <= set(demo["user_ids"])
