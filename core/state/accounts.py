"""Delegated service accounts: their health, their MSAL token caches, sign-ins in progress.

- `pb:tenant:{t}:accounts` hash: account -> JSON `AccountHealth` (writers: `core.signin` on
  sign-in, `core.graph_tokens` on refresh; readers: the subscription planner, status, metrics).
- `pb:tenant:{t}:account:{a}:cache` string: the account's MSAL cache, sealed by
  `core.token_cache` (this module never sees it in plaintext).
- `pb:oauth:flow:{sha256(state)}` string, EX 10 min: a sealed `SignInFlow`, taken once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from redis import Redis

from core.state._private import PREFIX, Batch, dumps, loads, number, tenant_key, text

# A sign-in in progress: msal's auth code flow holds the PKCE verifier and the nonce, so it is
# sealed like a token cache and lives only as long as a person needs to sign in.
SIGN_IN_TTL_SECONDS = 600
FLOW_PREFIX = PREFIX + "oauth:flow:"


def health_key(tenant: str) -> str:
    return tenant_key(tenant, "accounts")


def token_cache_key(tenant: str, account: str) -> str:
    return tenant_key(tenant, f"account:{account}:cache")


def flow_key(state: str) -> str:
    """Keyed by a digest: `state` guards the callback, so Redis must not show it in clear."""
    return FLOW_PREFIX + hashlib.sha256(state.encode()).hexdigest()


def normalize(account: str) -> str:
    """UPNs compare case-insensitively in Entra ID; store them one way."""
    return account.strip().lower()


# ---- health ------------------------------------------------------------------------------


class AccountStatus(StrEnum):
    HEALTHY = "healthy"
    NEEDS_SIGN_IN = "needs_sign_in"
    NOT_SIGNED_IN = "not_signed_in"  # configured, never signed in (no record)


@dataclass(frozen=True)
class AccountHealth:
    account: str
    status: AccountStatus
    reason: str | None = None
    signed_in_at: float | None = None
    # The last time the identity platform answered a refresh for it (the RT's last use).
    last_refresh: float | None = None
    changed_at: float | None = None  # when `status` last changed

    def to_bytes(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes | str, account: str = "") -> AccountHealth:
        """`account` (the hash field) stands in when the JSON lacks it.

        A status this version does not know reads as needing a sign-in: never as healthy.
        """
        data = loads(raw)
        if not isinstance(data, dict):
            data = {}
        try:
            status = AccountStatus(str(data.get("status")))
        except ValueError:
            status = AccountStatus.NEEDS_SIGN_IN
        reason = data.get("reason")
        return cls(
            account=str(data.get("account") or account),
            status=status,
            reason=str(reason) if reason is not None else None,
            signed_in_at=number(data.get("signed_in_at")),
            last_refresh=number(data.get("last_refresh")),
            changed_at=number(data.get("changed_at")),
        )


def read(redis: Redis, tenant: str, account: str) -> AccountHealth | None:
    name = normalize(account)
    raw = redis.hget(health_key(tenant), name)
    return None if raw is None else AccountHealth.from_bytes(raw, name)


def write(redis: Redis, tenant: str, record: AccountHealth) -> None:
    redis.hset(health_key(tenant), record.account, record.to_bytes())


def queue_read_all(pipe: Batch, tenant: str) -> None:
    """Queue the read `health_from_raw` decodes."""
    pipe.hgetall(health_key(tenant))


def health_from_raw(raw: Mapping[bytes, bytes]) -> dict[str, AccountHealth]:
    return {text(k): AccountHealth.from_bytes(v, text(k)) for k, v in raw.items()}


def read_all(redis: Redis, tenant: str) -> dict[str, AccountHealth]:
    """Every recorded account of the tenant, by account."""
    raw: dict[bytes, bytes] = redis.hgetall(health_key(tenant))  # type: ignore[assignment]
    return health_from_raw(raw)


def mark_signed_in(redis: Redis, tenant: str, account: str, now: float) -> AccountHealth:
    record = AccountHealth(
        normalize(account), AccountStatus.HEALTHY, None, now, now, changed_at=now
    )
    write(redis, tenant, record)
    return record


def mark_refreshed(redis: Redis, tenant: str, account: str, now: float) -> AccountHealth:
    old = read(redis, tenant, account) or AccountHealth(normalize(account), AccountStatus.HEALTHY)
    changed = now if old.status is not AccountStatus.HEALTHY else old.changed_at
    record = replace(
        old, status=AccountStatus.HEALTHY, reason=None, last_refresh=now, changed_at=changed
    )
    write(redis, tenant, record)
    return record


def mark_needs_sign_in(
    redis: Redis, tenant: str, account: str, reason: str, now: float
) -> AccountHealth:
    old = read(redis, tenant, account) or AccountHealth(
        normalize(account), AccountStatus.NEEDS_SIGN_IN
    )
    changed = now if old.status is not AccountStatus.NEEDS_SIGN_IN else old.changed_at
    record = replace(old, status=AccountStatus.NEEDS_SIGN_IN, reason=reason, changed_at=changed)
    write(redis, tenant, record)
    return record


def with_configured(
    recorded: Mapping[str, AccountHealth], configured: Iterable[str]
) -> list[AccountHealth]:
    """The recorded accounts plus the configured ones never signed in, sorted by name."""
    records = dict(recorded)
    for account in configured:
        name = normalize(account)
        records.setdefault(name, AccountHealth(name, AccountStatus.NOT_SIGNED_IN))
    return [records[name] for name in sorted(records)]


def account_health(redis: Redis, tenant: str, configured: Iterable[str]) -> list[AccountHealth]:
    """Every configured or recorded account of the tenant, sorted by name."""
    return with_configured(read_all(redis, tenant), configured)


def healthy_accounts(redis: Redis, tenant: str, configured: Iterable[str]) -> list[str]:
    """Configured accounts that can hold a subscription now, sorted."""
    wanted = {normalize(a) for a in configured}
    return [
        h.account
        for h in account_health(redis, tenant, ())
        if h.status is AccountStatus.HEALTHY and h.account in wanted
    ]


# ---- token caches ------------------------------------------------------------------------


def read_token_cache(redis: Redis, tenant: str, account: str) -> bytes | None:
    """The sealed cache, or None when the account never signed in."""
    return redis.get(token_cache_key(tenant, account))  # type: ignore[return-value]


def write_token_cache(redis: Redis, tenant: str, account: str, sealed: bytes) -> None:
    redis.set(token_cache_key(tenant, account), sealed)


def delete_token_cache(redis: Redis, tenant: str, account: str) -> None:
    redis.delete(token_cache_key(tenant, account))


def token_caches_present(redis: Redis, tenant: str, accounts: Sequence[str]) -> list[bool]:
    """For each account, in order, whether a token cache is stored (one round trip)."""
    pipe = redis.pipeline(transaction=False)
    for account in accounts:
        pipe.exists(token_cache_key(tenant, account))
    return [bool(n) for n in pipe.execute()]


# ---- sign-ins in progress ----------------------------------------------------------------


@dataclass(frozen=True)
class SignInFlow:
    """What the callback needs of the first leg: msal's flow, for whom it was started."""

    tenant: str
    account: str | None
    flow: dict[str, Any]

    def to_bytes(self) -> bytes:
        return dumps({"tenant": self.tenant, "account": self.account, "flow": self.flow})

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> SignInFlow | None:
        """None for a value that is no flow (a callback then starts the sign-in again)."""
        data = loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("flow"), dict):
            return None
        account = data.get("account")
        return cls(str(data.get("tenant", "")), str(account) if account else None, data["flow"])


def put_flow(redis: Redis, state: str, sealed: bytes) -> None:
    redis.set(flow_key(state), sealed, ex=SIGN_IN_TTL_SECONDS)


def take_flow(redis: Redis, state: str) -> bytes | None:
    """The sealed flow started under `state`, at most once (GETDEL: a replay finds none)."""
    return redis.getdel(flow_key(state))  # type: ignore[return-value]
