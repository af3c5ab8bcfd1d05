"""core.state.accounts: health records, token caches and sign-in flows in Redis."""

from __future__ import annotations

import orjson
import redis

from core.state import accounts
from core.state.accounts import SIGN_IN_TTL_SECONDS, AccountHealth, AccountStatus, SignInFlow

T = "contoso"


def test_health_round_trip(redis_client: redis.Redis) -> None:
    record = AccountHealth("svc@x", AccountStatus.HEALTHY, None, 10.0, 20.0, 10.0)
    assert AccountHealth.from_bytes(record.to_bytes()) == record

    accounts.write(redis_client, T, record)

    assert accounts.read(redis_client, T, " SVC@x ") == record
    assert accounts.read_all(redis_client, T) == {"svc@x": record}


def test_an_older_health_record_reads_with_defaults() -> None:
    # No timestamps, no account in the JSON: the hash field names it.
    older = AccountHealth.from_bytes(b'{"status": "needs_sign_in", "reason": "revoked"}', "svc@x")

    assert older == AccountHealth("svc@x", AccountStatus.NEEDS_SIGN_IN, "revoked")


def test_an_unknown_status_never_reads_as_healthy() -> None:
    newer = AccountHealth.from_bytes(b'{"account": "svc@x", "status": "suspended"}')

    assert newer.status is AccountStatus.NEEDS_SIGN_IN
    assert AccountHealth.from_bytes(b"garbage", "svc@x").status is AccountStatus.NEEDS_SIGN_IN


def test_the_stored_shape_is_unchanged(redis_client: redis.Redis) -> None:
    accounts.mark_signed_in(redis_client, T, "Svc@X", 10.0)

    stored = orjson.loads(redis_client.hget(accounts.health_key(T), "svc@x") or b"")

    assert stored == {"account": "svc@x", "status": "healthy", "reason": None,
                      "signed_in_at": 10.0, "last_refresh": 10.0, "changed_at": 10.0}  # fmt: skip


def test_configured_accounts_never_signed_in_are_listed(redis_client: redis.Redis) -> None:
    accounts.mark_needs_sign_in(redis_client, T, "b@x", "invalid_grant", 5.0)

    listed = accounts.account_health(redis_client, T, ["A@x", "b@x"])

    assert [(h.account, h.status) for h in listed] == [
        ("a@x", AccountStatus.NOT_SIGNED_IN), ("b@x", AccountStatus.NEEDS_SIGN_IN)
    ]  # fmt: skip
    assert accounts.healthy_accounts(redis_client, T, ["a@x", "b@x"]) == []


def test_the_health_is_read_in_the_callers_pipeline(redis_client: redis.Redis) -> None:
    accounts.mark_signed_in(redis_client, T, "svc@x", 10.0)
    pipe = redis_client.pipeline(transaction=False)
    accounts.queue_read_all(pipe, T)
    (raw,) = pipe.execute()

    assert list(accounts.health_from_raw(raw)) == ["svc@x"]


def test_token_caches_are_stored_as_given(redis_client: redis.Redis) -> None:
    assert accounts.read_token_cache(redis_client, T, "a@x") is None
    accounts.write_token_cache(redis_client, T, "a@x", b"sealed")

    assert accounts.read_token_cache(redis_client, T, "a@x") == b"sealed"
    assert accounts.token_caches_present(redis_client, T, ["a@x", "b@x"]) == [True, False]
    accounts.delete_token_cache(redis_client, T, "a@x")
    assert accounts.token_caches_present(redis_client, T, ["a@x"]) == [False]


def test_a_sign_in_flow_round_trip() -> None:
    flow = SignInFlow(T, "svc@x", {"state": "s", "code_verifier": "v"})

    assert SignInFlow.from_bytes(flow.to_bytes()) == flow
    assert SignInFlow.from_bytes(b'{"tenant": "contoso", "flow": {}}') == SignInFlow(T, None, {})
    assert SignInFlow.from_bytes(b'{"tenant": "contoso"}') is None


def test_a_flow_is_taken_once_and_expires(redis_client: redis.Redis) -> None:
    accounts.put_flow(redis_client, "state-1", b"sealed")

    assert 0 < redis_client.ttl(accounts.flow_key("state-1")) <= SIGN_IN_TTL_SECONDS
    assert accounts.take_flow(redis_client, "state-1") == b"sealed"
    assert accounts.take_flow(redis_client, "state-1") is None


def test_the_flow_key_does_not_show_the_state() -> None:
    assert "state-1" not in accounts.flow_key("state-1")
    assert accounts.flow_key("state-1").startswith(accounts.FLOW_PREFIX)
