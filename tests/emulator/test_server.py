"""The emulator as a server: TLS with its own CA, the plain-http variant, the command line."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msal
import pytest
import requests

from emulator.server import EmulatorServer
from tests.emulator.conftest import GRAPH_DEFAULT

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_ca_verifies_the_server(
    emulator: EmulatorServer, graph_http: httpx.Client
) -> None:
    assert graph_http.get(f"{emulator.base_url}/_emulator/health").json() == {"status": "ok"}


def test_a_client_without_the_ca_is_refused(emulator: EmulatorServer) -> None:
    with (
        httpx.Client(verify=ssl.create_default_context()) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"{emulator.base_url}/_emulator/health")


def test_plain_http_variant(emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(tls=False)
    assert (server.ca_path, server.base_url.startswith("http://")) == (None, True)
    assert httpx.get(f"{server.base_url}/_emulator/health").status_code == 200


def test_stop_closes_the_port() -> None:
    server = EmulatorServer(tls=False).start()
    url = f"{server.base_url}/_emulator/health"
    assert httpx.get(url).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_unknown_graph_path_is_a_graph_shaped_404(graph_http: httpx.Client) -> None:
    response = graph_http.get("/no/such/thing")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "innerError"}


def test_cli_help_documents_options_and_control_api() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for text in ("--port", "--seed", "--users", "--ca-out", "/tenants/{tid}/users", "/revoke"):
        assert text in result.stdout


@pytest.fixture
def cli_emulator(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """`python -m emulator` on a free port; yields (base URL, CA file, demo seed)."""
    ca, seed = tmp_path / "ca.pem", tmp_path / "demo.json"
    command = [sys.executable, "-m", "emulator", "--port", "0", "--users", "10"]
    command += ["--ca-out", str(ca), "--seed-out", str(seed), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert process.stdout is not None
    base_url = ""
    for line in process.stdout:  # the server prints this line once it listens
        if line.startswith("Graph emulator ready at "):
            base_url = line.split()[-1]
            break
    try:
        assert base_url, "the emulator exited before it was ready"
        yield base_url, ca, json.loads(seed.read_text())
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


def test_cli_serves_the_demo_seed(cli_emulator: tuple[str, Path, dict[str, str]]) -> None:
    base_url, ca, demo = cli_emulator
    with requests.Session() as http:
        http.trust_env, http.verify = False, str(ca)
        app = msal.ConfidentialClientApplication(
            demo["client_id"],
            client_credential=demo["client_secret"],
            authority=demo["authority"],
            instance_discovery=False,
            http_client=http,
        )
        token = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)["access_token"]
    users = httpx.get(
        f"{base_url}/v1.0/users",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(ca)),
    ).json()["value"]
    assert len(users) == 11  # ten users and one service account
