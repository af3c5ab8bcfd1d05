"""The whole emulator as a test sees it: `EmulatorServer` over TLS, tokens from the real msal.

`running_graph()` starts a private emulator (its own world, clock and settings), seeds one
tenant with two apps and some users through the control API, and hands out access tokens
that msal obtained over HTTPS: delegated ones through the auth code flow (the emulator signs
the user in from `login_hint`), app-only ones through client credentials.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import msal
import requests

from emulator.control import ControlClient
from emulator.delivery import graph_time
from emulator.server import EmulatorServer
from emulator.world import World

TENANT = "11111111-1111-1111-1111-111111111111"
APP = "22222222-2222-2222-2222-222222222222"
OTHER_APP = "33333333-3333-3333-3333-333333333333"
SERVICE_USER = "44444444-4444-4444-4444-444444444444"
APP_ROLES = ["Presence.Read.All", "Presence.ReadWrite.All", "User.Read.All"]
DELEGATED_SCOPES = ("Presence.Read.All", "Presence.ReadWrite")
GRAPH = "https://graph.microsoft.com/"
# A token with less than this left (emulated time) is fetched again rather than reused.
TOKEN_MARGIN = 300.0


def user_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def upn(uid: str) -> str:
    return f"{uid}@contoso.test"


@dataclass
class Graph:
    """A running emulator with one tenant, apps `APP` and `OTHER_APP`, and seeded users."""

    server: EmulatorServer
    control: ControlClient
    client: httpx.Client  # base URL: the emulator's root, trusting its CA only
    msal_http: requests.Session
    secret: str  # both apps' client secret
    users: set[str] = field(default_factory=set)
    _tokens: dict[tuple[str | None, str, float | None], str] = field(default_factory=dict)

    @property
    def world(self) -> World:
        return self.server.world

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def ensure_user(self, uid: str) -> None:
        """Seed `uid` (upn `<uid>@contoso.test`) unless the tenant has it already."""
        if uid not in self.users:
            self.control.seed_users(TENANT, [{"id": uid, "userPrincipalName": upn(uid)}])
            self.users.add(uid)

    def token(
        self, *, user: str | None = SERVICE_USER, app: str = APP, lifetime: float | None = None
    ) -> dict[str, str]:
        """Authorization header with a token msal got: delegated for `user`, app-only for None.

        `lifetime` sets the emulator's access-token lifetime (seconds) for this token only.
        """
        key = (user, app, lifetime)
        cached = self._tokens.get(key)
        if cached is None or self._left(cached) < TOKEN_MARGIN:
            cached = self._tokens[key] = self._acquire(user, app, lifetime)
        return {"authorization": f"Bearer {cached}"}

    def app_token(self, app: str = APP) -> dict[str, str]:
        return self.token(user=None, app=app)

    def _left(self, token: str) -> float:
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        return float(exp) - self.world.clock.now()

    def _acquire(self, user: str | None, app_id: str, lifetime: float | None) -> str:
        if lifetime is not None:
            previous = self.control.settings()["access_token_lifetime"]
            self.control.update_settings(access_token_lifetime=lifetime)
        try:
            # A fresh msal application each time: msal's own cache runs on the wall clock,
            # which knows nothing of the emulated one.
            app = msal.ConfidentialClientApplication(
                app_id,
                client_credential=self.secret,
                **self.server.msal_options(TENANT, self.msal_http),
            )
            if user is None:
                result = app.acquire_token_for_client(scopes=[f"{GRAPH}.default"])
            else:
                self.ensure_user(user)
                flow = app.initiate_auth_code_flow(
                    [GRAPH + scope for scope in DELEGATED_SCOPES],
                    redirect_uri=self.callback_url,
                    login_hint=upn(user),
                    response_mode="form_post",
                )
                fields = self.control.sign_in(flow["auth_uri"], submit=False)
                result = app.acquire_token_by_auth_code_flow(flow, fields)
        finally:
            if lifetime is not None:
                self.control.update_settings(access_token_lifetime=previous)
        assert "access_token" in result, result
        return str(result["access_token"])

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}/_emulator/callback"

    def expiry(self, minutes: float) -> str:
        return graph_time(self.world.clock.now() + minutes * 60)

    def subscribe(
        self,
        notification_url: str,
        *,
        ids: list[str] | None = None,
        headers: dict[str, str] | None = None,
        minutes: float = 60,
        **extra: Any,
    ) -> httpx.Response:
        ids = ids if ids is not None else [user_id(1)]
        body = {
            **presence_subscription(ids, notification_url, self.expiry(minutes)),
            **extra,
        }
        return self.client.post("/v1.0/subscriptions", json=body, headers=headers or self.token())

    def set_presence(self, uid: str, availability: str, activity: str, **extra: Any) -> None:
        """A Teams client's presence, through the control API."""
        response = self.client.post(
            "/_emulator/presence",
            json={"id": uid, "availability": availability, "activity": activity, **extra},
        )
        assert response.status_code == 200, response.text


@contextmanager
def running_graph(users: int = 5, settings: dict[str, Any] | None = None) -> Iterator[Graph]:
    """A private emulator over HTTPS with `users` users (`user_id(1..users)`) and a service user."""
    with (
        EmulatorServer() as server,
        server.control() as control,
        server.msal_session() as msal_http,
    ):
        assert server.tls is not None
        secret = secrets.token_urlsafe(16)
        control.seed_tenant(TENANT)
        for app_id in (APP, OTHER_APP):
            control.seed_app(
                TENANT,
                client_id=app_id,
                secret=secret,
                redirect_uris=[f"{server.base_url}/_emulator/callback"],
                roles=APP_ROLES,
            )
        ids = [SERVICE_USER, *(user_id(n) for n in range(1, users + 1))]
        control.seed_users(TENANT, [{"id": uid, "userPrincipalName": upn(uid)} for uid in ids])
        if settings:
            control.update_settings(**settings)
        with httpx.Client(
            base_url=server.base_url, verify=server.tls.client_context(), timeout=30
        ) as client:
            yield Graph(server, control, client, msal_http, secret, users=set(ids))


def password_token(
    control: ControlClient,
    http: requests.Session,
    *,
    authority: str,
    client_id: str,
    secret: str,
    username: str,
    password: str,
    redirect_uri: str,
) -> str:
    """A delegated token the way the bridge gets one for a service account: auth code flow,
    the account's password typed into the sign-in form, no person involved."""
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=authority,
        instance_discovery=False,
        http_client=http,
    )
    flow = app.initiate_auth_code_flow(
        [GRAPH + scope for scope in DELEGATED_SCOPES],
        redirect_uri=redirect_uri,
        response_mode="form_post",
    )
    fields = control.sign_in(flow["auth_uri"], submit=False, username=username, password=password)
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert "access_token" in result, result
    return str(result["access_token"])


def presence_subscription(ids: list[str], notification_url: str, expires: str) -> dict[str, Any]:
    """A subscription body for the presence of `ids`, expiring at `expires` (Graph time)."""
    return {
        "changeType": "updated",
        "notificationUrl": notification_url,
        "resource": "/communications/presences?$filter=id in ({})".format(
            ",".join(f"'{i}'" for i in ids)
        ),
        "expirationDateTime": expires,
        "clientState": "secret-state",
    }
