"""Graph emulator fixtures, importable by other test packages.

In another package's conftest.py:
    from tests.emulator.conftest import emulator, emulator_factory, seeded_tenant  # noqa: F401
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.notification_crypto import generate_encryption_certificate
from emulator.control import ControlClient
from emulator.harness.tenants import ALL_ROLES as ALL_ROLES
from emulator.server import EmulatorServer

GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]


@dataclass(frozen=True)
class SeededTenant:
    """A fresh tenant with one confidential app and one service account that can sign in."""

    tenant_id: str
    client_id: str
    secret: str
    redirect_uri: str
    account_id: str
    account_upn: str


@dataclass(frozen=True)
class Certificate:
    private_key_pem: str
    certificate_pem: str
    thumbprint: str  # SHA-1, hex


def seed_tenant(
    server: EmulatorServer, control: ControlClient, roles: list[str] | None = None
) -> SeededTenant:
    tenant_id = control.seed_tenant(str(uuid.uuid4()))
    secret, redirect_uri = uuid.uuid4().hex, f"{server.base_url}/_emulator/callback"
    app = control.seed_app(
        tenant_id,
        secret=secret,
        redirect_uris=[redirect_uri],
        roles=ALL_ROLES if roles is None else roles,
    )
    upn = f"svc-{uuid.uuid4().hex[:8]}@contoso.test"
    account_id = control.add_service_account(tenant_id, upn, uuid.uuid4().hex, "Presence service")
    return SeededTenant(tenant_id, app["client_id"], secret, redirect_uri, account_id, upn)


def make_certificate() -> Certificate:
    """A self-signed RSA app certificate (key PEM, certificate PEM, x5t thumbprint) for Entra."""
    key_pem, der_b64, thumbprint = generate_encryption_certificate(
        "presence-bridge test app",
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        valid_days=31,
    )
    cert = x509.load_der_x509_certificate(base64.b64decode(der_b64))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Certificate(key_pem.decode(), pem, thumbprint)


def poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition that has no event to await, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator for the session; tests that move its clock or settings use a private one."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start private emulators (`EmulatorServer` keyword arguments); all stop after the test."""
    started: list[EmulatorServer] = []

    def start(**kwargs: Any) -> EmulatorServer:
        server = EmulatorServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def control(emulator: EmulatorServer) -> Iterator[ControlClient]:
    with emulator.control() as client:
        yield client


@pytest.fixture
def seeded_tenant(emulator: EmulatorServer, control: ControlClient) -> SeededTenant:
    return seed_tenant(emulator, control)


@pytest.fixture
def msal_http(emulator: EmulatorServer) -> Iterator[requests.Session]:
    with emulator.msal_session() as session:
        yield session


@pytest.fixture
def graph_http(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """An httpx client trusting the emulator's CA, with Graph's base URL."""
    assert emulator.tls is not None
    with httpx.Client(base_url=emulator.graph_url, verify=emulator.tls.client_context()) as client:
        yield client


def app_token(server: EmulatorServer, tenant: SeededTenant, http: requests.Session) -> str:
    """An app-only Graph token obtained by the real msal with the tenant's client secret."""
    app = msal.ConfidentialClientApplication(
        tenant.client_id,
        client_credential=tenant.secret,
        **server.msal_options(tenant.tenant_id, http),
    )
    result = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert "access_token" in result, result
    return str(result["access_token"])
