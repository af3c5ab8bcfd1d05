"""The bridge's Microsoft Graph client: sync httpx, Graph's retry rules, typed errors, paging.

Retries follow Graph's throttling guidance: wait `Retry-After` seconds on 429 (and on a 5xx that
sends it), otherwise back off exponentially with jitter; a 401 gets one fresh token and one more
try. A client with a shared back-off (`core.state.backoff`, the workers') never waits in-process
for a throttle: it records it for every worker and raises, and it sends nothing while the
record says to wait but the one probe. Tokens never appear in errors or logs; error messages
carry the method and path only.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from core.errors import GraphError
from core.state.backoff import Backoff

log = logging.getLogger(__name__)

GRAPH_BASE_URL = "https://graph.microsoft.com"
PRESENCE_BATCH = 650  # getPresencesByUserId takes at most 650 ids per call
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# A longer Retry-After is handed to the caller (job scheduler) instead of blocking a worker.
MAX_RETRY_AFTER_SECONDS = 60.0
# Graph's throttling answers (its guidance names 429, 503 and 504 with Retry-After).
THROTTLE_STATUSES = frozenset({429, 503, 504})
MIN_PRESENCE_EXPIRATION = dt.timedelta(minutes=5)
MAX_PRESENCE_EXPIRATION = dt.timedelta(hours=4)
_MESSAGE_LIMIT = 300

TokenProvider = Callable[[], str]
Sleep = Callable[[float], None]
Json = dict[str, Any]


class GraphRequestError(GraphError):
    """A `GraphError` raised by `GraphClient`: an answer of Graph or a transport failure."""


class GraphBackingOff(GraphRequestError):
    """Graph throttles this app: the call was refused, or not sent, until `retry_after`."""

    backing_off = True

    def __init__(self, where: str, wait: float, reason: str, status: int = 429) -> None:
        super().__init__(
            status, "backingOff", f"{where}: {reason}", retry_after=max(wait, 0.0), transient=True
        )


class Pages(Iterator[Json]):
    """Items of every page; after exhaustion `delta_link` holds Graph's `@odata.deltaLink`."""

    def __init__(
        self,
        fetch: Callable[[str, Mapping[str, str] | None], Json],
        first: str,
        params: Mapping[str, str] | None,
    ) -> None:
        self._fetch = fetch
        self._next: str | None = first
        self._params = params
        self._items: Iterator[Json] = iter(())
        self.delta_link: str | None = None
        self.pages = 0

    def __iter__(self) -> Pages:
        return self

    def __next__(self) -> Json:
        while True:
            item = next(self._items, None)
            if item is not None:
                return item
            if self._next is None:
                raise StopIteration
            # Query parameters belong to the first request only; links already encode them.
            page = self._fetch(self._next, self._params)
            self._params = None
            self.pages += 1
            self._items = iter(page.get("value") or [])
            self._next = page.get("@odata.nextLink")
            if self._next is None:
                self.delta_link = page.get("@odata.deltaLink")


class GraphClient:
    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        fresh_token: TokenProvider | None = None,
        verify: str | Path | bool | ssl.SSLContext = True,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        api_version: str = "v1.0",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        """`fresh_token` is called after a 401 (defaults to `token_provider`); `backoff` is
        the app's back-off shared by every worker."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._root = f"{base_url.rstrip('/')}/{api_version.strip('/')}"
        self._token_provider = token_provider
        self._fresh_token = fresh_token or token_provider
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._shared = backoff
        if isinstance(verify, str | Path):
            # httpx 0.28 deprecates a CA path for `verify`; it wants an SSL context.
            verify = ssl.create_default_context(cafile=str(verify))
        self._http = httpx.Client(verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- generic verbs ----------------------------------------------------------------------

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        return self.request("GET", path, params=params, headers=headers)

    def post(self, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Json:
        return self.request("POST", path, body=body, headers=headers)

    def patch(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Json:
        return self.request("PATCH", path, body=body, headers=headers)

    def delete(self, path: str, headers: Mapping[str, str] | None = None) -> Json:
        return self.request("DELETE", path, headers=headers)

    def paginate(
        self,
        url_or_path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Pages:
        """Follow `@odata.nextLink` (whole URL) to the end; custom headers go to every page."""
        return Pages(lambda url, p: self.get(url, p, headers), url_or_path, params)

    def request(
        self,
        method: str,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        url = self._url(url_or_path)
        where = f"{method} {urlsplit(url).path}"  # never the query: links carry opaque tokens
        if self._shared is None:
            return self._send(method, url, where, params, body, headers)
        gate = self._shared.gate()
        if not gate.go:
            wait = gate.until - time.time()
            raise GraphBackingOff(where, wait, f"not sent: Graph is backing off for {wait:.0f} s")
        try:
            result = self._send(method, url, where, params, body, headers)
        except GraphBackingOff:
            raise  # recorded, and the probe's lease released with it
        except GraphError as exc:
            if gate.probe and exc.transient:
                self._shared.release()
            elif gate.probe:  # a refusal is an answer: Graph takes calls again
                self._shared.succeeded()
            raise
        except BaseException:
            if gate.probe:
                self._shared.release()
            raise
        if gate.probe:
            self._shared.succeeded()
        return result

    def _send(
        self,
        method: str,
        url: str,
        where: str,
        params: Mapping[str, str] | None,
        body: Any,
        headers: Mapping[str, str] | None,
    ) -> Json:
        content = orjson.dumps(body) if body is not None else None
        token = self._token_provider()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if content is not None:
                request_headers["Content-Type"] = "application/json"
            request_headers.update(headers or {})
            try:
                response = self._http.request(
                    method, url, params=params, content=content, headers=request_headers
                )
            except httpx.TransportError as exc:
                if attempt >= self._max_attempts:
                    raise GraphRequestError(
                        0, "transportError", f"{where}: {type(exc).__name__}", transient=True
                    ) from None
                delay = self._backoff(attempt)
                log.warning(
                    "graph %s failed (%s); retry in %.2fs", where, type(exc).__name__, delay
                )
                self._sleep(delay)
                continue
            status = response.status_code
            if status < 300:
                return _parse(response)
            if status == 401 and not refreshed:
                # One fresh token per request: a second 401 means the grant itself is bad.
                refreshed = True
                attempt -= 1
                token = self._fresh_token()
                log.info("graph %s answered 401; retrying once with a fresh token", where)
                continue
            error = _error_from(response, where)
            if not error.transient:
                raise error
            if self._shared is not None and (
                status in THROTTLE_STATUSES or error.retry_after is not None
            ):
                # Every worker waits, not just this one: no in-process sleep, no flood.
                until = self._shared.failed(status, error.retry_after, f"{status} {error.code}")
                log.warning("graph %s answered %d; backing off until %.0f", where, status, until)
                reason = f"Graph answered {status} ({error.code})"
                raise GraphBackingOff(where, until - time.time(), reason, status) from None
            if error.retry_after is not None and error.retry_after > self._max_retry_after:
                raise error
            if attempt >= self._max_attempts:
                raise error
            delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            log.warning("graph %s answered %d; retry in %.2fs", where, status, delay)
            self._sleep(delay)

    def _url(self, url_or_path: str) -> str:
        if "://" not in url_or_path:
            return f"{self._root}/{url_or_path.lstrip('/')}"
        parts = urlsplit(url_or_path)
        # The bearer token only ever goes to the configured Graph origin, whatever a link says.
        if f"{parts.scheme}://{parts.netloc}" != self._origin:
            raise ValueError(f"refusing to send a Graph token to another origin: {parts.netloc}")
        return url_or_path

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        # Equal jitter: never less than half the step, so workers spread out but still wait.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    # ---- Graph operations the bridge uses -------------------------------------------------------

    def get_presences_by_user_id(self, user_ids: Sequence[str]) -> list[Json]:
        presences: list[Json] = []
        for start in range(0, len(user_ids), PRESENCE_BATCH):
            chunk = list(user_ids[start : start + PRESENCE_BATCH])
            page = self.post("/communications/getPresencesByUserId", {"ids": chunk})
            presences.extend(page.get("value") or [])
        return presences

    def create_subscription(self, body: Mapping[str, Any]) -> Json:
        return self.post("/subscriptions", dict(body))

    def renew_subscription(self, subscription_id: str, expiration: dt.datetime) -> Json:
        return self.patch(
            f"/subscriptions/{_segment(subscription_id)}",
            {"expirationDateTime": format_datetime(expiration)},
        )

    def delete_subscription(self, subscription_id: str) -> bool:
        """True if deleted, False if Graph no longer knew it (deleting is idempotent)."""
        try:
            self.delete(f"/subscriptions/{_segment(subscription_id)}")
        except GraphError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_subscriptions(self) -> list[Json]:
        return list(self.paginate("/subscriptions"))

    def set_presence(
        self,
        user_id: str,
        session_id: str,
        availability: str,
        activity: str,
        expiration: dt.timedelta,
    ) -> None:
        if not MIN_PRESENCE_EXPIRATION <= expiration <= MAX_PRESENCE_EXPIRATION:
            raise ValueError("setPresence expirationDuration must be PT5M to PT4H")
        self.post(
            f"/users/{_segment(user_id)}/presence/setPresence",
            {
                "sessionId": session_id,
                "availability": availability,
                "activity": activity,
                "expirationDuration": format_duration(expiration),
            },
        )

    def clear_presence(self, user_id: str, session_id: str) -> bool:
        """True if cleared, False if the session did not exist (Graph answers 404)."""
        try:
            self.post(
                f"/users/{_segment(user_id)}/presence/clearPresence", {"sessionId": session_id}
            )
        except GraphError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def users_delta(self, delta_link: str | None, select: Iterable[str]) -> Pages:
        """Changes since `delta_link` (or everything when None); read `.delta_link` at the end."""
        if delta_link:
            return self.paginate(delta_link)
        return self.paginate("/users/delta", {"$select": ",".join(select)})


def format_datetime(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("expiration must be timezone-aware")
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_duration(span: dt.timedelta) -> str:
    """ISO 8601 duration as Graph expects it, e.g. PT1H30M."""
    total = int(span.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{seconds}S" if seconds or text == "PT" else "")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _parse(response: httpx.Response) -> Json:
    if not response.content:
        return {}
    try:
        parsed = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise GraphRequestError(
            response.status_code, "invalidResponse", "Graph answered with a body that is not JSON"
        ) from None
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _error_from(response: httpx.Response, where: str) -> GraphRequestError:
    status = response.status_code
    code, message = f"http{status}", response.reason_phrase or "error"
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Graph: {"error": {"code", "message", "innerError"}}
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
        elif isinstance(error, str):  # identity platform: {"error", "error_description"}
            code = error
            message = str(body.get("error_description") or message)
    retry_after = _retry_after(response.headers.get("Retry-After"))
    return GraphRequestError(
        status, code, f"{where}: {message[:_MESSAGE_LIMIT]}", retry_after=retry_after
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP-date is allowed too
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
