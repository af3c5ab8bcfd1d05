"""The Microsoft identity platform as the bridge meets it through msal: scopes and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msal.exceptions
import requests

from core.errors import BridgeError

# Presence subscriptions exist in the Global cloud only (not US Gov L4/L5, not China), so the
# resource is fixed even when graph_base_url points elsewhere (the emulator accepts it too).
GRAPH_RESOURCE = "https://graph.microsoft.com"
APP_SCOPES = [f"{GRAPH_RESOURCE}/.default"]
# Unprefixed delegated scopes mean Graph; msal adds openid, profile and offline_access itself.
DELEGATED_SCOPES = ["Presence.Read.All"]
HTTP_TIMEOUT_SECONDS = 10.0
# Answers that only a person signing in again can fix.
SIGN_IN_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "consent_required", "login_required"}
)
# No answer, or an answer msal cannot read (it raises MsalServiceError on a 5xx page).
UNAVAILABLE = (requests.RequestException, msal.exceptions.MsalServiceError)


class AuthError(BridgeError):
    """The identity platform refused, for a reason that retrying will not fix."""

    status_code = 502


class SignInRequired(AuthError):
    """A service account must be signed in again; its health record says why."""

    def __init__(self, tenant: str, account: str, reason: str) -> None:
        self.tenant, self.account, self.reason = tenant, account, reason
        super().__init__(f"account {account} of tenant {tenant} needs sign-in: {reason}")


class SignInFailed(AuthError):
    """A sign-in callback that cannot be completed (unknown state, wrong account, refused)."""

    status_code = 400


class AuthUnavailable(AuthError):
    """The identity platform could not be reached or answered with a server error."""

    status_code = 503
    transient = True


def describe(result: Mapping[str, Any]) -> str:
    """`error[/suberror]: AADSTSnnnnn: text`, without Entra's trace and correlation ids."""
    name = "/".join(str(p) for p in (result.get("error"), result.get("suberror")) if p)
    text = str(result.get("error_description") or "").split(" Trace ID:")[0].strip()
    return f"{name or 'unknown_error'}: {text[:300]}" if text else name or "unknown_error"
