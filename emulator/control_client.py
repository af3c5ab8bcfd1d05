"""A thin client of the emulator's control API (`/_emulator/...`), for tests and scripts."""

from __future__ import annotations

import ssl
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

PREFIX = "/_emulator"


class FormReader(HTMLParser):
    """A page's first form as a browser sees it: action and hidden fields.

    `action` is "" for a form that posts back to its page, None when there is no form.
    """

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = found.get("action") or ""
        elif tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.fields[found["name"]] = found.get("value", "")


class ControlClient:
    """A thin client of the control API, for tests and scripts."""

    def __init__(self, base_url: str, ca_path: Path | str | None = None) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_path)) if ca_path else True
        )
        self.http = httpx.Client(base_url=base_url.rstrip("/") + PREFIX, verify=verify, timeout=60)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, json: Any = None, **params: Any) -> Any:
        """Call any control route (`path` relative to `/_emulator`); raise on 4xx/5xx."""
        response = self.http.request(method, path, json=json, params=params or None)
        response.raise_for_status()
        return response.json() if response.content else None

    def sign_in(
        self,
        auth_uri: str,
        *,
        submit: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> dict[str, str]:
        """Act as the browser on an authorize URL.

        The URL names its user (`login_hint`), or `username` and `password` (a service
        account's) are typed into the sign-in form it shows. Returns the auth response fields
        (`code`, `state`, ...) for msal's `acquire_token_by_auth_code_flow`; with `submit`,
        also delivers them to the redirect URI (GET for query mode, POST for form_post).
        """
        response = self.http.get(auth_uri)
        if password is not None and not response.is_redirect:
            response.raise_for_status()
            page = FormReader()
            page.feed(response.text)
            fields = {**page.fields, "username": username or "", "password": password}
            # The form posts back to the authorize URL itself (no action attribute).
            response = self.http.post(auth_uri, data=fields)
        if response.is_redirect:
            target = response.headers["location"]
            parts = urlsplit(target)
            fields = dict(parse_qsl(parts.fragment or parts.query))
            if submit:
                self.http.get(target).raise_for_status()
            return fields
        response.raise_for_status()
        form = FormReader()
        form.feed(response.text)
        if not form.action or ("code" not in form.fields and "error" not in form.fields):
            raise ValueError(
                "the emulator asks for a password: add login_hint to the request, "
                "or pass a service account's username and password"
            )
        if submit:
            self.http.post(form.action, data=form.fields).raise_for_status()
        return form.fields

    def seed_tenant(self, tenant_id: str | None = None) -> str:
        return str(self.request("POST", "/tenants", {"id": tenant_id})["id"])

    def seed_app(
        self,
        tenant_id: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        certificate_pem: str | None = None,
        redirect_uris: list[str] | None = None,
        roles: list[str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "client_id": client_id,
            "secret": secret,
            "certificate": certificate_pem,
            "redirect_uris": redirect_uris or [],
            "roles": roles or [],
        }
        result: dict[str, Any] = self.request("POST", f"/tenants/{tenant_id}/apps", body)
        return result

    def seed_users(
        self,
        tenant_id: str,
        users: list[dict[str, Any]] | None = None,
        *,
        count: int | None = None,
        prefix: str = "user",
        domain: str = "contoso.test",
        start: int = 0,
    ) -> list[str]:
        body: dict[str, Any] = {"users": users or []}
        if count is not None:
            body = {"count": count, "prefix": prefix, "domain": domain, "start": start}
        return list(self.request("POST", f"/tenants/{tenant_id}/users", body)["ids"])

    def add_service_account(
        self, tenant_id: str, user_principal_name: str, password: str, display_name: str = ""
    ) -> str:
        body = {
            "userPrincipalName": user_principal_name,
            "password": password,
            "displayName": display_name,
        }
        return str(self.request("POST", f"/tenants/{tenant_id}/service-accounts", body)["id"])

    def update_user(self, tenant_id: str, user_id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", f"/tenants/{tenant_id}/users/{user_id}", changes
        )
        return result

    def delete_user(self, tenant_id: str, user_id: str, *, permanent: bool = False) -> None:
        path = f"/tenants/{tenant_id}/users/{user_id}"
        self.request("DELETE", path, **({"permanent": "true"} if permanent else {}))

    def restore_user(self, tenant_id: str, user_id: str) -> None:
        self.request("POST", f"/tenants/{tenant_id}/users/{user_id}/restore")

    def revoke_user(self, tenant_id: str, user_id: str) -> None:
        self.request("POST", f"/tenants/{tenant_id}/users/{user_id}/revoke")

    def require_interaction(
        self, tenant_id: str, user_id: str, reason: str = "interaction_required"
    ) -> None:
        path = f"/tenants/{tenant_id}/users/{user_id}/require-interaction"
        self.request("POST", path, {"reason": reason})

    def tokens(self, **filters: str) -> list[dict[str, Any]]:
        return list(self.request("GET", "/tokens", **filters)["value"])

    def clock(self) -> float:
        return float(self.request("GET", "/clock")["now"])

    def advance_clock(self, seconds: float) -> float:
        return float(self.request("POST", "/clock/advance", {"seconds": seconds})["now"])

    def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/settings")
        return result

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PATCH", "/settings", changes)
        return result
