"""Delegated sign-in of service accounts: msal's auth code flow with PKCE, in two legs.

The first leg stores msal's flow in Redis under its `state`; the callback takes it from there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping

import msal
from redis import Redis

from core.cipher import CacheCipher
from core.identity import DELEGATED_SCOPES, UNAVAILABLE, AuthUnavailable, SignInFailed, describe
from core.settings import TenantSettings
from core.state import accounts
from core.state.accounts import SignInFlow

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"

AppBuilder = Callable[[msal.TokenCache | None], msal.ConfidentialClientApplication]


def store_flow(redis: Redis, cipher: CacheCipher, state: str, record: SignInFlow) -> None:
    """Keep the first leg for the callback, sealed: it holds the PKCE verifier."""
    accounts.put_flow(redis, state, cipher.encrypt(record.to_bytes()))


def take_flow(redis: Redis, cipher: CacheCipher, state: str) -> SignInFlow | None:
    """The flow started under `state`, at most once (a replayed callback finds none)."""
    sealed = accounts.take_flow(redis, state)
    if sealed is None:
        return None
    plaintext, _ = cipher.decrypt(sealed, "a sign-in in progress")
    return SignInFlow.from_bytes(plaintext)


class TenantSignIn:
    """Both legs of one tenant's sign-in; `save_cache(account, serialized)` keeps the result."""

    def __init__(
        self,
        tenant: TenantSettings,
        redis: Redis,
        *,
        cipher: Callable[[], CacheCipher],
        build: AppBuilder,
        save_cache: Callable[[str, str], None],
        clock: Callable[[], float],
    ) -> None:
        self.tenant = tenant
        self._redis = redis
        self._cipher = cipher
        self._build = build
        self._save_cache = save_cache
        self._clock = clock

    @property
    def configured_accounts(self) -> list[str]:
        return [accounts.normalize(a) for a in self.tenant.service_accounts]

    @property
    def redirect_uri(self) -> str:
        return str(self.tenant.public_base_url).rstrip("/") + CALLBACK_PATH

    def start(self, account: str | None = None) -> str:
        """Begin a service account's sign-in; returns the identity platform's URL to visit."""
        name = accounts.normalize(account) if account else None
        if not self.configured_accounts:
            raise SignInFailed(f"tenant {self.tenant.name} lists no service_accounts")
        if name is not None and name not in self.configured_accounts:
            raise SignInFailed(f"{name} is not a service account of tenant {self.tenant.name}")
        state = secrets.token_urlsafe(32)
        flow = self._build(None).initiate_auth_code_flow(
            DELEGATED_SCOPES,
            redirect_uri=self.redirect_uri,
            state=state,
            login_hint=name,
            # The code arrives in a POST body: never in URLs, history, logs or Referer headers.
            response_mode="form_post",
        )
        record = SignInFlow(self.tenant.name, name, dict(flow))
        store_flow(self._redis, self._cipher(), state, record)
        return str(flow["auth_uri"])

    def finish(self, record: SignInFlow, response: Mapping[str, str]) -> str:
        """Redeem the code of a callback; store the account's cache. Returns the account."""
        cache = msal.SerializableTokenCache()
        try:
            result = self._build(cache).acquire_token_by_auth_code_flow(
                dict(record.flow), dict(response)
            )
        except ValueError:  # msal: state mismatch, or a response that is not a callback
            raise SignInFailed("the sign-in response does not match its request") from None
        except UNAVAILABLE as exc:
            raise AuthUnavailable(
                f"tenant {self.tenant.name}: sign-in: {type(exc).__name__}"
            ) from None
        if "error" in result:
            raise SignInFailed(f"sign-in refused: {describe(result)}")
        claims = result.get("id_token_claims") or {}
        name = accounts.normalize(str(claims.get("preferred_username", "")))
        if claims.get("tid") != self.tenant.tenant_id:
            raise SignInFailed(f"signed in to another tenant than {self.tenant.name}")
        if record.account and name != record.account:
            raise SignInFailed(f"signed in as {name}, not as {record.account}")
        if name not in self.configured_accounts:
            raise SignInFailed(f"{name} is not a service account of tenant {self.tenant.name}")
        self._save_cache(name, cache.serialize())
        accounts.mark_signed_in(self._redis, self.tenant.name, name, self._clock())
        log.info("tenant %s: service account %s signed in", self.tenant.name, name)
        return name
