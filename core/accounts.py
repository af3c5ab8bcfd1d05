"""Health of the delegated service accounts: one JSON record per account in a Redis hash.

Writers: `core.auth` (sign-in, refresh). Readers: the subscription planner (which accounts may
hold a subscription), status and metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

import orjson
from redis import Redis

from core import keys


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

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> AccountHealth:
        data = orjson.loads(raw)
        data["status"] = AccountStatus(data["status"])
        return cls(**data)


def normalize(account: str) -> str:
    """UPNs compare case-insensitively in Entra ID; store them one way."""
    return account.strip().lower()


def read(redis: Redis, tenant: str, account: str) -> AccountHealth | None:
    raw = redis.hget(keys.account_health(tenant), normalize(account))
    return None if raw is None else AccountHealth.from_json(raw)  # type: ignore[arg-type]


def _write(redis: Redis, tenant: str, record: AccountHealth) -> None:
    redis.hset(keys.account_health(tenant), record.account, record.to_json())


def mark_signed_in(redis: Redis, tenant: str, account: str, now: float) -> AccountHealth:
    record = AccountHealth(
        normalize(account), AccountStatus.HEALTHY, None, now, now, changed_at=now
    )
    _write(redis, tenant, record)
    return record


def mark_refreshed(redis: Redis, tenant: str, account: str, now: float) -> AccountHealth:
    old = read(redis, tenant, account) or AccountHealth(normalize(account), AccountStatus.HEALTHY)
    changed = now if old.status is not AccountStatus.HEALTHY else old.changed_at
    record = replace(
        old, status=AccountStatus.HEALTHY, reason=None, last_refresh=now, changed_at=changed
    )
    _write(redis, tenant, record)
    return record


def mark_needs_sign_in(
    redis: Redis, tenant: str, account: str, reason: str, now: float
) -> AccountHealth:
    old = read(redis, tenant, account) or AccountHealth(
        normalize(account), AccountStatus.NEEDS_SIGN_IN
    )
    changed = now if old.status is not AccountStatus.NEEDS_SIGN_IN else old.changed_at
    record = replace(old, status=AccountStatus.NEEDS_SIGN_IN, reason=reason, changed_at=changed)
    _write(redis, tenant, record)
    return record


def account_health(redis: Redis, tenant: str, configured: Iterable[str]) -> list[AccountHealth]:
    """Every configured or recorded account of the tenant, sorted by name."""
    raw: dict[bytes, bytes] = redis.hgetall(keys.account_health(tenant))  # type: ignore[assignment]
    records = {k.decode(): AccountHealth.from_json(v) for k, v in raw.items()}
    for account in configured:
        name = normalize(account)
        records.setdefault(name, AccountHealth(name, AccountStatus.NOT_SIGNED_IN))
    return [records[name] for name in sorted(records)]


def healthy_accounts(redis: Redis, tenant: str, configured: Iterable[str]) -> list[str]:
    """Configured accounts that can hold a subscription now, sorted."""
    wanted = {normalize(a) for a in configured}
    return [
        h.account
        for h in account_health(redis, tenant, ())
        if h.status is AccountStatus.HEALTHY and h.account in wanted
    ]
