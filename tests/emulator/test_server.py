"""The emulator as a server: TLS with its own CA, the plain-http variant, start and stop."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest

from emulator.server import EmulatorServer


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
