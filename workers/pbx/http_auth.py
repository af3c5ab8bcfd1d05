"""Authentication for the `http` PBX adapter: options models and the request auths behind them.

The one secret (PbxSettings.secret) is read only at the moment a request is signed; nothing
here stores it in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.errors import PbxError
from workers.pbx.http_tokens import PbxTokens, ProcessTokens, SharedTokens, Token, TokenShare

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
Clock = Callable[[], float]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BearerAuth(_Frozen):
    """A static token sent as `<header>: <scheme> <secret>`."""

    type: Literal["bearer"]
    header: str = "Authorization"
    scheme: str = "Bearer"


class BasicAuth(_Frozen):
    type: Literal["basic"]
    username: str = Field(min_length=1)


class ApiKeyAuth(_Frozen):
    """A static key in a header or a query parameter (Bicom's `apikey=`)."""

    type: Literal["api_key"]
    name: str = Field(min_length=1)
    location: Literal["header", "query"] = "header"


class OAuth2Auth(_Frozen):
    """OAuth2 token endpoint; client credentials by default, JWT-bearer for RingCentral."""

    type: Literal["oauth2"]
    token_url: str = Field(min_length=1)  # absolute, or relative to base_url
    client_id: str = Field(min_length=1)
    scope: str | None = None
    grant_type: str = "client_credentials"
    client_auth: Literal["body", "basic"] = "body"
    # 3CX before 20.0.9 sent expires_in in minutes.
    expires_in_unit: Literal["seconds", "minutes"] = "seconds"
    refresh_margin_seconds: float = Field(default=60.0, ge=0)


class HmacAuth(_Frozen):
    """HMAC-SHA256 over `<timestamp>.<body>`, Standard-Webhooks style."""

    type: Literal["hmac"]
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"
    prefix: str = "v1="
    encoding: Literal["hex", "base64"] = "hex"


class StarfaceAuth(_Frozen):
    """STARFACE nonce login: secret = login:SHA512(login + nonce + SHA512(password))."""

    type: Literal["starface"]
    login: str = Field(min_length=1)
    login_url: str = "/rest/login"


AuthOptions = Annotated[
    BearerAuth | BasicAuth | ApiKeyAuth | OAuth2Auth | HmacAuth | StarfaceAuth,
    Field(discriminator="type"),
]


class RequestAuth(Protocol):
    """How the `http` adapter authenticates its requests to the PBX."""

    def sign(self, request: httpx.Request) -> None:
        """Add credentials to a request that is about to be sent."""
        ...

    def refresh(self, request: httpx.Request) -> bool:
        """After a 401: drop what was used; True when sending again may help."""
        ...


class _NoAuth:
    def sign(self, request: httpx.Request) -> None:
        return None

    def refresh(self, request: httpx.Request) -> bool:
        return False


@dataclass(frozen=True)
class _Static:
    header: str | None
    query: str | None
    value: SecretStr

    def sign(self, request: httpx.Request) -> None:
        if self.header is not None:
            request.headers[self.header] = self.value.get_secret_value()
        if self.query is not None:
            request.url = request.url.copy_merge_params({self.query: self.value.get_secret_value()})

    def refresh(self, request: httpx.Request) -> bool:
        return False


@dataclass(frozen=True)
class _Hmac:
    options: HmacAuth
    key: SecretStr
    clock: Clock

    def sign(self, request: httpx.Request) -> None:
        timestamp = str(int(self.clock()))
        mac = hmac.new(
            self.key.get_secret_value().encode(),
            timestamp.encode() + b"." + request.content,
            hashlib.sha256,
        ).digest()
        text = mac.hex() if self.options.encoding == "hex" else base64.b64encode(mac).decode()
        request.headers[self.options.timestamp_header] = timestamp
        request.headers[self.options.signature_header] = self.options.prefix + text

    def refresh(self, request: httpx.Request) -> bool:
        return False


class _TokenAuth:
    """A fetched token sent as a header; its `PbxTokens` decide who fetches and who shares it."""

    def __init__(self, header: str, scheme: str, tokens: PbxTokens) -> None:
        self._header = header
        self._scheme = scheme
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(header={self._header!r})"

    def sign(self, request: httpx.Request) -> None:
        request.headers[self._header] = f"{self._scheme} {self._tokens.current()}".strip()

    def refresh(self, request: httpx.Request) -> bool:
        used = request.headers.get(self._header, "")
        self._tokens.invalidate(used.removeprefix(f"{self._scheme} ") if self._scheme else used)
        return True


def _secret_parts(secret: SecretStr) -> dict[str, str]:
    """A plain secret, or a JSON object when an auth needs two (client secret + JWT assertion)."""
    raw = secret.get_secret_value()
    if raw.lstrip().startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"secret": raw}
        if isinstance(parsed, dict):
            return {str(k): str(v) for k, v in parsed.items()}
    return {"secret": raw}


def secret_problems(
    auth: AuthOptions | None, secret: SecretStr | None, env_hint: str, path: str = "pbx.secret"
) -> list[str]:
    """What is wrong with the secret for this auth; never quotes the secret."""
    if auth is None:
        return []
    if secret is None or not secret.get_secret_value():
        return [f"{path}: the {auth.type} auth needs a secret in {env_hint}"]
    if isinstance(auth, OAuth2Auth) and auth.grant_type == JWT_BEARER:
        parts = _secret_parts(secret)
        if "assertion" not in parts:
            return [
                f"{path}: the jwt-bearer grant needs a JSON object "
                '{"client_secret": ..., "assertion": ...}'
            ]
    return []


def _expiry(body: Any, options: OAuth2Auth, clock: Clock) -> float:
    expires_in = body.get("expires_in", 3600)
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        seconds = 3600.0
    if options.expires_in_unit == "minutes":
        seconds *= 60
    return clock() + max(seconds - options.refresh_margin_seconds, 0.0)


def _token_from(response: httpx.Response, what: str, field: str) -> Any:
    if response.status_code == 429 or response.status_code >= 500:
        raise PbxError(f"{what} answered {response.status_code}", transient=True)
    if response.status_code >= 400:
        raise PbxError(f"{what} refused the credentials ({response.status_code})", transient=False)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get(field), str):
        raise PbxError(f"{what} answered without a {field!r} string", transient=False)
    return body


def _oauth2(
    options: OAuth2Auth,
    secret: SecretStr,
    client: httpx.Client,
    url: str,
    clock: Clock,
    share: TokenShare | None,
) -> _TokenAuth:
    def fetch() -> Token:
        parts = _secret_parts(secret)
        client_secret = parts.get("client_secret", parts.get("secret", ""))
        form = {"grant_type": options.grant_type}
        if options.scope:
            form["scope"] = options.scope
        if "assertion" in parts:
            form["assertion"] = parts["assertion"]
        headers: dict[str, str] = {}
        if options.client_auth == "basic":
            raw = f"{options.client_id}:{client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            form["client_id"] = options.client_id
            form["client_secret"] = client_secret
        try:
            response = client.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise PbxError(
                f"token endpoint unreachable: {type(exc).__name__}", transient=True
            ) from None
        body = _token_from(response, "token endpoint", "access_token")
        return Token(body["access_token"], _expiry(body, options, clock))

    digest = hashlib.sha256(secret.get_secret_value().encode()).hexdigest()
    key = ("oauth2", url, options.client_id, options.scope or "", options.grant_type, digest)
    tokens: PbxTokens = (
        ProcessTokens(key, clock, fetch)
        if share is None
        else SharedTokens(share, key, clock, fetch)
    )
    return _TokenAuth("Authorization", "Bearer", tokens)


def _starface(
    options: StarfaceAuth, secret: SecretStr, client: httpx.Client, url: str, clock: Clock
) -> _TokenAuth:
    def fetch() -> Token:
        try:
            nonce_response = client.get(url, headers={"X-Version": "2"})
            template = _token_from(nonce_response, "STARFACE login", "nonce")
            inner = hashlib.sha512(secret.get_secret_value().encode()).hexdigest()
            digest = hashlib.sha512(
                (options.login + template["nonce"] + inner).encode()
            ).hexdigest()
            login = {
                "loginType": template.get("loginType", "Internal"),
                "nonce": template["nonce"],
                "secret": f"{options.login}:{digest}",
            }
            response = client.post(url, json=login, headers={"X-Version": "2"})
        except httpx.HTTPError as exc:
            raise PbxError(
                f"STARFACE login unreachable: {type(exc).__name__}", transient=True
            ) from None
        body = _token_from(response, "STARFACE login", "token")
        # The token lifetime is not documented: keep it until the PBX answers 401.
        return Token(body["token"], float("inf"))

    digest = hashlib.sha256(secret.get_secret_value().encode()).hexdigest()
    # A STARFACE login is a session, not an OAuth2 client token: each process keeps its own.
    key = ("starface", url, options.login, digest)
    return _TokenAuth("authToken", "", ProcessTokens(key, clock, fetch))


def build_request_auth(
    options: AuthOptions | None,
    secret: SecretStr | None,
    client: httpx.Client,
    resolve_url: Callable[[str], str],
    clock: Clock = time.time,
    share: TokenShare | None = None,
) -> RequestAuth:
    """The request auth for validated options; `secret` was checked by secret_problems().

    With `share`, an OAuth2 token is shared through Redis by every worker of the tenant.
    """
    if options is None or secret is None:
        return _NoAuth()
    if isinstance(options, BearerAuth):
        value = SecretStr(f"{options.scheme} {secret.get_secret_value()}".strip())
        return _Static(options.header, None, value)
    if isinstance(options, BasicAuth):
        raw = f"{options.username}:{secret.get_secret_value()}".encode()
        return _Static("Authorization", None, SecretStr("Basic " + base64.b64encode(raw).decode()))
    if isinstance(options, ApiKeyAuth):
        if options.location == "header":
            return _Static(options.name, None, secret)
        return _Static(None, options.name, secret)
    if isinstance(options, HmacAuth):
        return _Hmac(options, secret, clock)
    if isinstance(options, OAuth2Auth):
        return _oauth2(options, secret, client, resolve_url(options.token_url), clock, share)
    return _starface(options, secret, client, resolve_url(options.login_url), clock)


class RedactingFilter(logging.Filter):
    """Blanks registered secrets in records of the `httpx` logger, which logs full URLs."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[int, str] = {}
        self._lock = threading.Lock()

    def register(self, owner: object, secret: str) -> None:
        with self._lock:
            self._secrets[id(owner)] = secret

    def unregister(self, owner: object) -> None:
        with self._lock:
            self._secrets.pop(id(owner), None)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = [s for s in self._secrets.values() if s]
        for secret in secrets:
            text = text.replace(secret, "***")
            text = text.replace(str(httpx.QueryParams({"k": secret}))[2:], "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            active = bool(self._secrets)
        if active:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


REDACTOR = RedactingFilter()
logging.getLogger("httpx").addFilter(REDACTOR)
