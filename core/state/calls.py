"""Active PBX calls per PBX user, and the Graph users whose Teams presence they set."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from core.state._private import dumps, loads, tenant_key, text


def calls_key(tenant: str) -> str:
    """Hash: pbx user -> JSON of its active PBX calls."""
    return tenant_key(tenant, "calls")


@dataclass(frozen=True)
class ActiveCalls:
    """The calls a PBX user is on; `graph_ids` are fixed when the first call starts."""

    call_ids: tuple[str, ...] = ()
    graph_ids: tuple[str, ...] = ()
    since: float | None = None  # when the first of these calls started

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> ActiveCalls:
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        since = data.get("since")
        return cls(
            _ids(data.get("call_ids")),
            _ids(data.get("graph_ids")),
            float(since) if isinstance(since, int | float) else None,
        )

    def to_bytes(self) -> bytes:
        out: dict[str, object] = {
            "call_ids": list(self.call_ids),
            "graph_ids": list(self.graph_ids),
        }
        if self.since is not None:
            out["since"] = self.since
        return dumps(out)


def _ids(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def read(redis: Redis, tenant: str, pbx_user: str) -> ActiveCalls:
    """The user's calls; none when it is on no call."""
    raw: bytes | None = redis.hget(calls_key(tenant), pbx_user)  # type: ignore[assignment]
    return ActiveCalls.from_bytes(raw)


def read_all(redis: Redis, tenant: str) -> dict[str, ActiveCalls]:
    """Every PBX user on a call and their calls (what a restarted call-state source resumes)."""
    raw: dict[bytes, bytes] = redis.hgetall(calls_key(tenant))  # type: ignore[assignment]
    out = {text(user): ActiveCalls.from_bytes(value) for user, value in raw.items()}
    return {user: record for user, record in out.items() if record.call_ids}


def save(redis: Redis, tenant: str, pbx_user: str, calls: ActiveCalls) -> None:
    """Store the user's calls; a user on no call has no record."""
    if calls.call_ids:
        redis.hset(calls_key(tenant), pbx_user, calls.to_bytes())
    else:
        redis.hdel(calls_key(tenant), pbx_user)
