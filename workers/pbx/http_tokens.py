"""Fetched PBX tokens: kept per process, or shared by every worker through Redis.

3CX allows one active token per client id: a process that fetches its own token invalidates
every other process's. With Redis, one process at a time fetches (under a short lock) and
the others take its token from Redis (`core.state.pbx`), encrypted with the cache key.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis, RedisError

from core.cipher import CacheCipher, CacheKeyError
from core.errors import PbxError
from core.state import pbx
from core.state.pbx import PbxToken

log = logging.getLogger(__name__)

Clock = Callable[[], float]
LOCK_MS = 10_000  # longer than a token request normally takes; a dead holder frees it by expiry
WAIT_SECONDS = 10.0  # how long to wait for another worker's token before fetching our own
POLL_SECONDS = 0.05


@dataclass
class Token:
    value: str = field(repr=False)
    expires_at: float


Fetch = Callable[[], Token]


class PbxTokens(Protocol):
    """Where the `http` adapter gets its fetched token: `ProcessTokens` or `SharedTokens`."""

    def current(self) -> str:
        """A usable token, fetched when there is none."""
        ...

    def invalidate(self, used: str) -> None:
        """The PBX refused `used`: forget it, unless a newer token replaced it already."""
        ...


# One cache per process, keyed by endpoint + client + a digest of the secret, so every adapter
# instance (and every thread) of a process shares one token.
_TOKENS: dict[tuple[str, ...], Token] = {}
_TOKENS_LOCK = threading.Lock()


def clear_token_cache() -> None:
    with _TOKENS_LOCK:
        _TOKENS.clear()


class ProcessTokens:
    """Tokens of this process only (no Redis: the CLI, STARFACE sessions)."""

    def __init__(self, key: tuple[str, ...], clock: Clock, fetch: Fetch) -> None:
        self._key = key
        self._clock = clock
        self._fetch = fetch

    def __repr__(self) -> str:
        return "ProcessTokens()"

    def current(self) -> str:
        with _TOKENS_LOCK:
            token = _TOKENS.get(self._key)
            if token is None or token.expires_at <= self._clock():
                token = self._fetch()
                _TOKENS[self._key] = token
            return token.value

    def invalidate(self, used: str) -> None:
        with _TOKENS_LOCK:
            token = _TOKENS.get(self._key)
            if token is not None and token.value == used:
                del _TOKENS[self._key]


@dataclass(frozen=True)
class TokenShare:
    """Where a tenant's workers share their PBX token; given by the adapter's builder."""

    redis: Redis = field(repr=False)
    cipher: CacheCipher = field(repr=False)
    tenant: str
    wait_seconds: float = WAIT_SECONDS


class SharedTokens:
    """One token per tenant in Redis, fetched by one process at a time."""

    def __init__(self, share: TokenShare, key: tuple[str, ...], clock: Clock, fetch: Fetch) -> None:
        self._share = share
        self._redis = share.redis
        self._tenant = share.tenant
        # Which endpoint, client and secret a stored token belongs to: a changed config must
        # not pick up the old client's token.
        self._for = hashlib.sha256("\0".join(key).encode()).hexdigest()
        self._clock = clock
        self._fetch = fetch
        self._what = f"the shared PBX token of tenant {share.tenant}"
        # The token this instance uses and its sealed bytes, so Redis is read only when it
        # expires or the PBX refuses it; one thread of this instance renews at a time.
        self._held: tuple[Token, bytes] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedTokens(tenant={self._share.tenant!r})"

    def current(self) -> str:
        with self._lock:
            held = self._held
            if held is None or held[0].expires_at <= self._clock():
                try:
                    held = self._held = self._load() or self._renew()
                except RedisError as exc:
                    raise self._unavailable(exc) from None
            return held[0].value

    def invalidate(self, used: str) -> None:
        with self._lock:
            held = self._held
            if held is None or held[0].value != used:
                return  # another thread of ours already moved on to a newer token
            self._held = None
            try:
                pbx.drop_sealed_token(self._redis, self._tenant, held[1])
            except RedisError as exc:
                raise self._unavailable(exc) from None

    def _unavailable(self, exc: RedisError) -> PbxError:
        return PbxError(f"{self._what} cannot be read: Redis {type(exc).__name__}", transient=True)

    def _load(self) -> tuple[Token, bytes] | None:
        sealed = pbx.sealed_token(self._redis, self._tenant)
        if sealed is None:
            return None
        try:
            plain, _ = self._share.cipher.decrypt(sealed, self._what)
        except CacheKeyError as exc:
            # Another host seals with a different key: say so, and replace the token.
            log.warning("%s", exc)
            return None
        stored = PbxToken.from_bytes(plain)
        if stored is None:
            log.warning("%s is not readable; fetching a new one", self._what)
            return None
        if stored.for_ != self._for or stored.expires_at <= self._clock():
            return None
        return Token(stored.access_token, stored.expires_at), sealed

    def _renew(self) -> tuple[Token, bytes]:
        owner = secrets.token_hex(16)
        deadline = time.monotonic() + self._share.wait_seconds
        while True:
            if pbx.take_token_lock(self._redis, self._tenant, owner, LOCK_MS):
                try:
                    # The holder before us may have stored a token while we asked.
                    return self._load() or self._save(self._fetch())
                finally:
                    pbx.release_token_lock(self._redis, self._tenant, owner)
            found = self._load()
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: another worker held the fetch lock for %.0f s without storing "
                    "a token; fetching one here",
                    self._what,
                    self._share.wait_seconds,
                )
                return self._save(self._fetch())
            time.sleep(POLL_SECONDS)  # no event to wait on: the winner only writes a key

    def _save(self, token: Token) -> tuple[Token, bytes]:
        sealed = self._share.cipher.encrypt(
            PbxToken(token.value, token.expires_at, self._for).to_bytes()
        )
        # expires_at is already the lifetime minus the refresh margin; round down so Redis
        # never hands out a token we would treat as expired.
        ttl = token.expires_at - self._clock()
        if not math.isfinite(ttl):
            pbx.save_sealed_token(self._redis, self._tenant, sealed, None)
        elif ttl >= 1:
            pbx.save_sealed_token(self._redis, self._tenant, sealed, int(ttl))
        log.info("%s was fetched and stored", self._what)
        return token, sealed
