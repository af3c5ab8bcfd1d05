"""Tokens for Microsoft Graph: app-only (client credentials) and delegated service accounts.

Per tenant, one msal `ConfidentialClientApplication` serves app-only tokens from its in-memory
cache. Each service account gets its own application bound to its own token cache, because
MSAL keeps one cache per application and Microsoft advises one cache per user for
confidential clients; that cache lives encrypted in Redis (`core.token_cache`).

msal is always built with `instance_discovery=False`: otherwise, for any host other than
Microsoft's well-known login hosts (the emulator, a proxy), msal first asks
login.microsoftonline.com whether the host is a known authority. The authority comes from the
operator's tenants file, not from a caller, so that check protects nothing here. TLS is never
relaxed: `ca_bundle`, when set, is the only CA trusted for login (and Graph).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msal
import requests
from redis import Redis

from core.cipher import CacheCipher
from core.errors import ConfigError
from core.graph import GraphClient
from core.identity import (
    APP_SCOPES,
    DELEGATED_SCOPES,
    HTTP_TIMEOUT_SECONDS,
    SIGN_IN_ERRORS,
    UNAVAILABLE,
    AuthError,
    AuthUnavailable,
    SignInFailed,
    SignInRequired,
    describe,
)
from core.settings import ProcessSettings, Settings, TenantSettings
from core.signin import TenantSignIn, take_flow
from core.state import accounts
from core.state.accounts import AccountHealth, AccountStatus, SignInFlow
from core.state.backoff import Backoff
from core.token_cache import AccountCache

log = logging.getLogger(__name__)

# Refresh tokens lapse after 90 days unused; refreshing an idle account every 14 days keeps a
# wide margin for outages and holidays.
STALE_AFTER_SECONDS = 14 * 24 * 3600.0

Clock = Callable[[], float]


def http_session(ca_bundle: Path | None) -> requests.Session:
    session = requests.Session()
    if ca_bundle is not None:
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override Session.verify (all that
        # msal sets); with an explicit CA the environment must not replace it.
        session.trust_env = False
        session.verify = str(ca_bundle)
    return session


def client_credential(tenant: TenantSettings) -> str | dict[str, str]:
    """The app's credential for msal; a certificate wins over a secret when both are set."""
    cert = tenant.certificate
    if cert is None:
        if tenant.client_secret is None:
            raise ConfigError([f"tenants.{tenant.name}: no client secret or certificate"])
        return tenant.client_secret.get_secret_value()
    try:
        credential = {
            "private_key": cert.private_key_path.read_text(),
            "thumbprint": cert.thumbprint,
        }
        if cert.public_certificate_path is not None:
            # Sent as x5c, for apps set up for subject name + issuer authentication.
            credential["public_certificate"] = cert.public_certificate_path.read_text()
    except OSError as exc:
        raise ConfigError(
            [f"tenants.{tenant.name}.certificate: cannot read {exc.filename}: {exc.strerror}"]
        ) from None
    if cert.passphrase is not None:
        credential["passphrase"] = cert.passphrase.get_secret_value()
    return credential


@dataclass
class _Slot:
    """One service account in this process: its lock, cache and msal application."""

    cache: AccountCache
    lock: threading.Lock = field(default_factory=threading.Lock)
    app: msal.ConfidentialClientApplication | None = None


class TenantTokens:
    def __init__(
        self,
        tenant: TenantSettings,
        process: ProcessSettings,
        redis: Redis,
        *,
        cipher: Callable[[], CacheCipher] | None = None,
        clock: Clock = time.time,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self.tenant = tenant
        self._process = process
        self._redis = redis
        self._cipher = cipher or (lambda: CacheCipher(process.cache_key))
        self._clock = clock
        self.stale_after = stale_after
        self._http = http_session(process.ca_bundle)
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._slots: dict[str, _Slot] = {}
        self._sign_in = TenantSignIn(
            tenant,
            redis,
            cipher=self._cipher,
            build=self._build,
            save_cache=self._replace_cache,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"TenantTokens({self.tenant.name!r})"

    def close(self) -> None:
        self._http.close()

    @property
    def redirect_uri(self) -> str:
        return self._sign_in.redirect_uri

    @property
    def configured_accounts(self) -> list[str]:
        return self._sign_in.configured_accounts

    def _build(self, cache: msal.TokenCache | None) -> msal.ConfidentialClientApplication:
        try:
            # The constructor fetches the OpenID configuration of the authority.
            return msal.ConfidentialClientApplication(
                self.tenant.client_id,
                client_credential=client_credential(self.tenant),
                authority=self.tenant.authority,
                instance_discovery=False,
                http_client=self._http,
                timeout=HTTP_TIMEOUT_SECONDS,
                token_cache=cache,
            )
        except UNAVAILABLE as exc:
            raise AuthUnavailable(
                f"tenant {self.tenant.name}: login host unreachable ({type(exc).__name__})"
            ) from None
        except ValueError as exc:  # msal: an authority whose discovery document is unusable
            raise AuthError(f"tenant {self.tenant.name}: unusable authority: {exc}") from None

    def _outcome(self, result: Mapping[str, Any] | None, what: str) -> Mapping[str, Any]:
        if result is None or "error" not in result:
            return result or {}
        reason = describe(result)
        if result.get("error") == "invalid_client":
            raise AuthError(f"tenant {self.tenant.name}: the app credential was refused: {reason}")
        if result.get("error") in SIGN_IN_ERRORS:
            return result
        raise AuthUnavailable(f"tenant {self.tenant.name}: {what} failed: {reason}")

    # ---- app-only --------------------------------------------------------------------------

    def app_token(self, *, fresh: bool = False) -> str:
        """An app-only Graph token; `fresh` drops the cached one first (after a Graph 401)."""
        with self._lock:
            if self._app is None:
                self._app = self._build(None)
            app = self._app
            if fresh:
                app.remove_tokens_for_client()  # msal refuses force_refresh for this flow
        try:
            result = app.acquire_token_for_client(scopes=APP_SCOPES)
        except UNAVAILABLE as exc:
            raise AuthUnavailable(
                f"tenant {self.tenant.name}: app token: {type(exc).__name__}"
            ) from None
        outcome = self._outcome(result, "app token")
        if "access_token" not in outcome:
            raise AuthError(f"tenant {self.tenant.name}: app token refused: {describe(outcome)}")
        return str(outcome["access_token"])

    # ---- delegated service accounts --------------------------------------------------------

    def _slot(self, account: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(account)
            if slot is None:
                cache = AccountCache(self._redis, self._cipher(), self.tenant.name, account)
                slot = self._slots[account] = _Slot(cache)
            return slot

    def _needs_sign_in(self, account: str, reason: str) -> SignInRequired:
        accounts.mark_needs_sign_in(self._redis, self.tenant.name, account, reason, self._clock())
        log.warning("tenant %s: account %s needs sign-in: %s", self.tenant.name, account, reason)
        return SignInRequired(self.tenant.name, account, reason)

    def delegated_token(self, account: str, *, fresh: bool = False) -> str:
        """A delegated Graph token of a service account, refreshed silently when due."""
        name = accounts.normalize(account)
        slot = self._slot(name)
        with slot.lock:
            if not slot.cache.load():
                raise self._needs_sign_in(name, "no stored sign-in")
            if slot.app is None:
                slot.app = self._build(slot.cache.cache)
            signed_in = slot.app.get_accounts()
            if not signed_in:
                raise self._needs_sign_in(name, "the token cache holds no account")
            try:
                result = slot.app.acquire_token_silent_with_error(
                    DELEGATED_SCOPES, signed_in[0], force_refresh=fresh
                )
            except UNAVAILABLE as exc:
                raise AuthUnavailable(
                    f"tenant {self.tenant.name}: refresh of {name}: {type(exc).__name__}"
                ) from None
            finally:
                slot.cache.save()  # only writes when msal changed the cache
        if result is None:
            raise self._needs_sign_in(name, "no usable refresh token in the cache")
        outcome = self._outcome(result, f"refresh of {name}")
        if "error" in outcome:
            raise self._needs_sign_in(name, describe(outcome))
        if outcome.get("token_source") == "identity_provider":
            accounts.mark_refreshed(self._redis, self.tenant.name, name, self._clock())
        return str(outcome["access_token"])

    def refresh_stale_accounts(self, now: float | None = None) -> list[str]:
        """Refresh healthy accounts whose refresh token went unused for `stale_after` seconds."""
        now = self._clock() if now is None else now
        refreshed = []
        for health in self.account_health():
            if health.status is not AccountStatus.HEALTHY:
                continue
            if health.last_refresh is not None and now - health.last_refresh < self.stale_after:
                continue
            try:
                self.delegated_token(health.account, fresh=True)
            except SignInRequired:
                continue  # recorded in its health; a person must act
            except AuthUnavailable as exc:
                log.warning("%s", exc)  # tried again on the next round
                continue
            refreshed.append(health.account)
        return refreshed

    def account_health(self) -> list[AccountHealth]:
        return accounts.account_health(self._redis, self.tenant.name, self.configured_accounts)

    def healthy_accounts(self) -> list[str]:
        return accounts.healthy_accounts(self._redis, self.tenant.name, self.configured_accounts)

    # ---- sign-in (core.signin) ---------------------------------------------------------------

    def start_sign_in(self, account: str | None = None) -> str:
        return self._sign_in.start(account)

    def finish_sign_in(self, record: SignInFlow, response: Mapping[str, str]) -> str:
        return self._sign_in.finish(record, response)

    def _replace_cache(self, account: str, serialized: str) -> None:
        slot = self._slot(account)
        with slot.lock:
            slot.cache.replace(serialized)

    def graph_client(
        self, account: str | None = None, *, backoff: Backoff | None = None
    ) -> GraphClient:
        """A Graph client with the app-only token, or with `account`'s delegated token;
        `backoff`: the app's back-off shared by every worker (`core.state.backoff`)."""
        if account is None:
            provider: Callable[[], str] = self.app_token
            fresh: Callable[[], str] = lambda: self.app_token(fresh=True)  # noqa: E731
        else:
            provider = lambda: self.delegated_token(account)  # noqa: E731
            fresh = lambda: self.delegated_token(account, fresh=True)  # noqa: E731
        verify: str | bool = str(self._process.ca_bundle) if self._process.ca_bundle else True
        return GraphClient(
            str(self.tenant.graph_base_url), provider, fresh_token=fresh, verify=verify,
            backoff=backoff,
        )  # fmt: skip


class GraphTokens:
    """Every tenant's `TenantTokens`, built on first use; the entry point for the processes."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        clock: Clock = time.time,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._clock = clock
        self._stale_after = stale_after
        self._lock = threading.Lock()
        self._cipher: CacheCipher | None = None
        self._tenants: dict[str, TenantTokens] = {}

    def __enter__(self) -> GraphTokens:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for auth in self._tenants.values():
            auth.close()

    def cipher(self) -> CacheCipher:
        with self._lock:
            if self._cipher is None:
                self._cipher = CacheCipher(self._settings.process.cache_key)
            return self._cipher

    def tenant(self, name: str) -> TenantTokens:
        with self._lock:
            auth = self._tenants.get(name)
            if auth is None:
                settings = self._settings.tenant(name)
                if settings is None:
                    raise AuthError(f"unknown tenant {name!r}")
                auth = self._tenants[name] = TenantTokens(
                    settings,
                    self._settings.process,
                    self._redis,
                    cipher=self.cipher,
                    clock=self._clock,
                    stale_after=self._stale_after,
                )
            return auth

    def app_token(self, tenant: str) -> str:
        return self.tenant(tenant).app_token()

    def delegated_token(self, tenant: str, account: str) -> str:
        return self.tenant(tenant).delegated_token(account)

    def account_health(self, tenant: str) -> list[AccountHealth]:
        return self.tenant(tenant).account_health()

    def healthy_accounts(self, tenant: str) -> list[str]:
        return self.tenant(tenant).healthy_accounts()

    def refresh_stale_accounts(self, now: float | None = None) -> dict[str, list[str]]:
        """Per tenant with service accounts, the accounts refreshed now."""
        return {
            t.name: self.tenant(t.name).refresh_stale_accounts(now)
            for t in self._settings.tenants
            if t.service_accounts
        }

    def start_sign_in(self, tenant: str, account: str | None = None) -> str:
        return self.tenant(tenant).start_sign_in(account)

    def finish_sign_in(self, response: Mapping[str, str]) -> tuple[str, str]:
        """Complete the sign-in the callback's `state` names; returns (tenant, account)."""
        state = response.get("state", "")
        record = take_flow(self._redis, self.cipher(), state) if state else None
        if record is None:
            raise SignInFailed("unknown or expired sign-in state: start the sign-in again")
        tenant = record.tenant
        return tenant, self.tenant(tenant).finish_sign_in(record, response)
