"""The `http` PBX adapter: per-action request templates for PBX REST APIs and webhooks.

Templates use `$name` / `${name}` (string.Template). Names: user, profile, availability,
activity, extension, id, the operator's `vars`, and the per-profile values from `profiles`
(a scalar value is `$value`; it defaults to the profile name). In a JSON body a string that is
exactly one `$name` keeps the value's type, so `{"enabled" = "$dnd"}` sends a boolean.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from redis import Redis

from core.cipher import CACHE_KEY_ENV, CacheCipher
from core.errors import ConfigError, PbxError
from core.settings import PbxSettings
from workers.pbx.base import PbxAdapter, PbxUserRecord, ProfileChange
from workers.pbx.http_auth import (
    REDACTOR,
    ApiKeyAuth,
    OAuth2Auth,
    RequestAuth,
    build_request_auth,
)
from workers.pbx.http_options import (
    Action,
    HttpOptions,
    ListAction,
    PathSpec,
    ReadAction,
    UserRef,
    lookup,
    template_names,
    validate_options,
)
from workers.pbx.http_tokens import TokenShare

log = logging.getLogger(__name__)

DIRECTORY_NAMES = frozenset({"extension", "id"})
MAX_PAGES = 100


class HttpPbxError(PbxError):
    """A PbxError that also says what the PBX answered and when it wants to be asked again."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, transient=transient)
        self.status = status
        self.retry_after = retry_after


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _field(item: Any, key: str | None, spec: PathSpec | None) -> str | None:
    """One field of a listed user; `$key` is the key of an object of objects (Bicom)."""
    value = key if spec == "$key" else lookup(item, spec)
    return None if value is None or value == "" else _text(value)


def _render(value: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        m = Template.pattern.fullmatch(value)
        if m and (m.group("named") or m.group("braced")):
            return names[m.group("named") or m.group("braced")]
        return Template(value).substitute({k: _text(v) for k, v in names.items()})
    if isinstance(value, dict):
        return {k: _render(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, names) for v in value]
    return value


def _deep_merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        return {**base, **{k: _deep_merge(base.get(k), v) for k, v in top.items()}}
    return top


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    seconds = raw.strip()
    if seconds.isascii() and seconds.isdigit():  # "²".isdigit() holds too
        return float(seconds) if len(seconds) <= 12 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True)
class _Sent:
    what: str  # "PUT /path", as errors name the request
    status: int
    body: Any


class HttpAdapter(PbxAdapter):
    """Applies profiles with templated HTTP requests; see docs/pbx-adapter-http.md."""

    name = "http"

    def __init__(
        self,
        options: HttpOptions,
        secret: SecretStr | None = None,
        *,
        clock: Callable[[], float] = time.time,
        share: TokenShare | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> None:
        """`extensions`: PBX username -> extension from the tenants file (pbx_users)."""
        self.options = options
        self._extensions = dict(extensions or {})
        self._clock = clock
        verify: ssl.SSLContext | bool = True
        if options.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(options.ca_bundle))
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=options.max_connections,
        )
        self._client = httpx.Client(
            timeout=options.timeout_seconds, limits=limits, verify=verify, follow_redirects=False
        )
        self._auth: RequestAuth = build_request_auth(
            options.auth, secret, self._client, self._url, clock, share
        )
        self._secret = secret
        if secret is not None and isinstance(options.auth, ApiKeyAuth):
            REDACTOR.register(self, secret.get_secret_value())
        self._directory: dict[str, tuple[str, str]] = {}
        self._directory_loaded_at: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: PbxSettings,
        tenant: str = "",
        redis: Redis | None = None,
        cache_key: SecretStr | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> HttpAdapter:
        """With `redis`, an OAuth2 token is shared by every worker (encrypted with `cache_key`)."""
        options = validate_options(settings, tenant)
        share: TokenShare | None = None
        if redis is not None and isinstance(options.auth, OAuth2Auth):
            if cache_key is None:
                raise ConfigError(
                    [
                        f"{CACHE_KEY_ENV}: required to share the PBX's OAuth2 token "
                        f"between workers (tenant {tenant})"
                    ]
                )
            share = TokenShare(redis, CacheCipher(cache_key), tenant)
        return cls(options, settings.secret, share=share, extensions=extensions)

    def __repr__(self) -> str:
        return f"HttpAdapter(preset={self.options.preset!r}, base_url={self.options.base_url!r})"

    def close(self) -> None:
        REDACTOR.unregister(self)
        self._client.close()

    # -- PbxAdapter -----------------------------------------------------------------------

    def apply_profile(self, change: ProfileChange) -> None:
        action = self.options.actions.apply_profile
        if action is None:
            raise PbxError("no apply_profile action configured", transient=False)
        names = self._names(change.user, self._profile_values(change.profile))
        names.update(
            profile=change.profile, availability=change.availability, activity=change.activity
        )
        read = self.options.actions.read_profile
        base: Any = None
        if action.merge_read:
            assert read is not None  # noqa: S101 - checked by validate_options
            base = self._send(read, self._names(change.user, {})).body
        sent = self._send(action, names, merge_into=base)
        if action.verify:
            assert read is not None  # noqa: S101 - checked by validate_options
            self._verify(sent, read, lookup(self._body(action, names, base), read.result), change)

    def _verify(self, sent: _Sent, read: ReadAction, written: Any, change: ProfileChange) -> None:
        """A PBX that says yes to everything: what it shows now must be what was written."""
        shown = lookup(self._send(read, self._names(change.user, {})).body, read.result)
        if read.values.get(_text(shown), _text(shown)) == read.values.get(
            _text(written), _text(written)
        ):
            return
        path = read.result if isinstance(read.result, str) else ".".join(map(str, read.result))
        raise HttpPbxError(
            f"{sent.what}: PBX answered {sent.status} but reads back {path} = "
            f"{self._redact(json.dumps(shown))[:100]}, not {json.dumps(written)[:100]}",
            transient=False,
            status=sent.status,
        )

    def read_profile(self, user: str) -> str | None:
        action = self.options.actions.read_profile
        if action is None:
            return None
        raw = lookup(self._send(action, self._names(user, {})).body, action.result)
        if raw is None:
            return None
        text = _text(raw)
        if action.values:
            return action.values.get(text, text)
        for profile, value in self.options.profiles.items():
            scalar = value.get("value") if isinstance(value, dict) else value
            if scalar is not None and _text(scalar) == text:
                return profile
        return text

    def list_users(self) -> list[PbxUserRecord] | None:
        action = self.options.actions.list_users
        if action is None:
            return None
        return [record for record, _ in self._list(action)]

    # -- internals ------------------------------------------------------------------------

    def _list(self, action: ListAction) -> list[tuple[PbxUserRecord, str | None]]:
        found: list[tuple[PbxUserRecord, str | None]] = []
        url: str | None = None
        for _ in range(MAX_PAGES):
            body = self._send(action, dict(self.options.vars), url_override=url).body
            items = lookup(body, action.items) if action.items else body
            rows: list[tuple[str | None, Any]] = (
                list(items.items())
                if isinstance(items, dict)
                else [(None, i) for i in items]
                if isinstance(items, list)
                else []
            )
            for key, item in rows:
                username = _field(item, key, action.username)
                if username is None:
                    continue
                record = PbxUserRecord(
                    username, _field(item, key, action.email), _field(item, key, action.extension)
                )
                found.append((record, _field(item, key, action.id)))
            nxt = lookup(body, action.next)
            if not isinstance(nxt, str) or not nxt:
                break
            if not self._on_this_pbx(nxt):
                # Our credentials go with every request: never to a host the PBX names.
                raise PbxError("the PBX's next-page link names another host", transient=False)
            url = nxt
        return found

    def _profile_values(self, profile: str) -> dict[str, Any]:
        values: dict[str, Any] = {"value": profile, **self.options.default}
        chosen = self.options.profiles.get(profile)
        if isinstance(chosen, dict):
            values.update(chosen)
        elif chosen is not None:
            values["value"] = chosen
        return values

    def _user_ref(self, user: str) -> tuple[str, str]:
        """(id, extension) of a PBX user: the `users` option, else the listed directory, else
        the tenants file's extension; the username where none of them says."""
        ref = self.options.users.get(user)
        if isinstance(ref, str):
            ref = UserRef(id=ref)
        listed = self._directory.get(user) if ref is None else None
        if ref is None and listed is None and self._directory_is_stale():
            self._load_directory()
            listed = self._directory.get(user)
        if listed is not None:
            return listed
        ext = (ref.extension if ref else None) or self._extensions.get(user) or user
        return (ref.id if ref and ref.id else ext), ext

    def _directory_is_stale(self) -> bool:
        if self.options.actions.list_users is None:
            return False
        loaded = self._directory_loaded_at
        return loaded is None or self._clock() - loaded >= self.options.directory_ttl_seconds

    def _load_directory(self) -> None:
        action = self.options.actions.list_users
        assert action is not None  # noqa: S101 - checked by _directory_is_stale
        self._directory_loaded_at = self._clock()
        self._directory = {
            r.username: (pbx_id or r.extension or r.username, r.extension or r.username)
            for r, pbx_id in self._list(action)
        }

    def _names(self, user: str, values: Mapping[str, Any]) -> dict[str, Any]:
        names: dict[str, Any] = {**self.options.vars, **values, "user": user}
        uses_directory = any(
            DIRECTORY_NAMES & set().union(*template_names(a).values())
            for a in (self.options.actions.apply_profile, self.options.actions.read_profile)
            if a is not None
        )
        if uses_directory:
            names["id"], names["extension"] = self._user_ref(user)
        return names

    def _on_this_pbx(self, link: str) -> bool:
        """A relative link, or an absolute one to base_url's scheme, host and port."""
        if not link.startswith(("http://", "https://")):
            return not link.startswith("//")  # "//host/..." names a host too
        try:
            there, here = httpx.URL(link), httpx.URL(self.options.base_url)
        except httpx.InvalidURL:
            return True  # refused as unusable when it is requested
        return (there.scheme, there.host, there.port) == (here.scheme, here.host, here.port)

    def _url(self, template: str, names: Mapping[str, Any] | None = None) -> str:
        path = template
        if names is not None:
            # Values land in a path: quote them so a user name cannot add path segments.
            path = Template(template).substitute(
                {k: quote(_text(v), safe="@:") for k, v in names.items()}
            )
        if path.startswith(("http://", "https://")):
            return path
        return self.options.base_url.rstrip("/") + "/" + path.lstrip("/")

    @staticmethod
    def _body(action: Action, names: Mapping[str, Any], merge_into: Any) -> Any:
        """The JSON body an action sends: its `json` rendered, on top of a read answer."""
        body = _render(action.json_body, names)
        if isinstance(merge_into, dict):
            body = _deep_merge(merge_into, body or {})
        return body

    def _build(
        self, action: Action, names: Mapping[str, Any], merge_into: Any, url_override: str | None
    ) -> httpx.Request:
        query = {k: _render(v, names) for k, v in action.query.items()}
        params = {k: v for k, v in query.items() if v != ""}
        headers = {**self.options.headers, **action.headers}
        headers = {k: _render(v, names) for k, v in headers.items()}
        kwargs: dict[str, Any] = {}
        if action.json_body is not None or merge_into is not None:
            body = self._body(action, names, merge_into)
            kwargs["content"] = json.dumps(body, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        elif action.form is not None:
            kwargs["data"] = {k: _render(v, names) for k, v in action.form.items()}
        elif action.content is not None:
            kwargs["content"] = _render(action.content, names).encode()
        if url_override is not None:
            return self._client.build_request("GET", self._url(url_override), headers=headers)
        url = self._url(action.url, names)
        return self._client.build_request(
            action.method, url, params=params or None, headers=headers, **kwargs
        )

    def _send(
        self,
        action: Action,
        names: Mapping[str, Any],
        *,
        merge_into: Any = None,
        url_override: str | None = None,
    ) -> _Sent:
        try:
            request = self._build(action, names, merge_into, url_override)
        except KeyError as exc:
            raise PbxError(
                f"template name {exc} has no value for this profile", transient=False
            ) from None
        except httpx.InvalidURL:  # a next-page link the PBX answered
            raise PbxError(
                "the PBX answered a URL that cannot be requested", transient=False
            ) from None
        what = f"{request.method} {request.url.path}"
        response = self._exchange(request, what)
        if response.status_code == 401 and self._auth.refresh(request):
            response = self._exchange(self._build(action, names, merge_into, url_override), what)
        return self._check(response, action, what)

    def _exchange(self, request: httpx.Request, what: str) -> httpx.Response:
        self._auth.sign(request)
        for attempt in (1, 2):
            try:
                return self._client.send(request)
            except httpx.TimeoutException:
                raise HttpPbxError(
                    f"{what}: timed out after {self.options.timeout_seconds}s", transient=True
                ) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # A pooled keep-alive connection closed by the PBX: one quick retry is safe
                # because every write we send is a full-state write.
                if attempt == 2:
                    raise HttpPbxError(
                        f"{what}: connection lost ({type(exc).__name__})", transient=True
                    ) from None
            except httpx.ConnectError as exc:
                raise HttpPbxError(
                    f"{what}: cannot connect ({type(exc).__name__})", transient=True
                ) from None
            except httpx.HTTPError as exc:
                raise HttpPbxError(f"{what}: {type(exc).__name__}", transient=False) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _check(self, response: httpx.Response, action: Action, what: str) -> _Sent:
        status = response.status_code
        snippet = self._redact(response.text[:200]) if response.content else ""
        if status == 429 or status == 408 or status >= 500:
            raise HttpPbxError(
                f"{what}: PBX answered {status} {snippet}".rstrip(),
                transient=True,
                status=status,
                retry_after=_retry_after(response),
            )
        if status >= 300:
            raise HttpPbxError(
                f"{what}: PBX answered {status} {snippet}".rstrip(), transient=False, status=status
            )
        if action.success_status is not None and status not in action.success_status:
            expected = " or ".join(map(str, action.success_status))
            raise HttpPbxError(
                f"{what}: PBX answered {status}, not {expected} {snippet}".rstrip(),
                transient=False,
                status=status,
            )
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        if action.error_path is not None and lookup(body, action.error_path) is not None:
            message = self._redact(_text(lookup(body, action.error_path))[:200])
            raise HttpPbxError(
                f"{what}: PBX reported an error: {message}", transient=False, status=status
            )
        log.debug("%s -> %s", what, status)
        return _Sent(what, status, body)

    def _redact(self, text: str) -> str:
        if self._secret is not None and self._secret.get_secret_value():
            text = text.replace(self._secret.get_secret_value(), "***")
        return re.sub(r"[\r\n]+", " ", text)


def build(
    settings: PbxSettings,
    tenant: str = "",
    redis: Redis | None = None,
    cache_key: SecretStr | None = None,
    extensions: Mapping[str, str] | None = None,
) -> HttpAdapter:
    """Factory used by the adapter registry: validate options, then connect nothing yet."""
    return HttpAdapter.from_settings(settings, tenant, redis, cache_key, extensions)
