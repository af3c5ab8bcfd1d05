"""Active PBX calls per PBX user."""

from __future__ import annotations

import orjson
import pytest
import redis

from core.state import calls
from core.state.calls import ActiveCalls

T = "contoso"


def test_a_call_record_keeps_its_stored_shape() -> None:
    record = ActiveCalls(("c1", "c2"), ("g1",), 10.0)

    assert orjson.loads(record.to_bytes()) == {
        "call_ids": ["c1", "c2"], "graph_ids": ["g1"], "since": 10.0
    }  # fmt: skip
    assert ActiveCalls.from_bytes(record.to_bytes()) == record


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"call_ids": ["c1"], "graph_ids": []}', ActiveCalls(("c1",))),
        (b'{"call_ids": ["c1", 5], "since": "then"}', ActiveCalls(("c1",))),
        (b"[]", ActiveCalls()),
        (None, ActiveCalls()),
    ],
)  # fmt: skip
def test_an_older_or_foreign_call_record_still_reads(
    raw: bytes | None, expected: ActiveCalls
) -> None:
    assert ActiveCalls.from_bytes(raw) == expected


def test_a_user_on_no_call_has_no_record(redis_client: redis.Redis) -> None:
    calls.save(redis_client, T, "alice", ActiveCalls(("c1",), ("g1",), 1.0))
    assert calls.read(redis_client, T, "alice") == ActiveCalls(("c1",), ("g1",), 1.0)

    calls.save(redis_client, T, "alice", ActiveCalls((), ("g1",), 1.0))

    assert not redis_client.exists(calls.calls_key(T))
    assert calls.read(redis_client, T, "alice") == ActiveCalls()


def test_all_users_on_calls_are_read_at_once(redis_client: redis.Redis) -> None:
    calls.save(redis_client, T, "alice", ActiveCalls(("blf:c1",), ("g1",), 1.0))
    calls.save(redis_client, T, "bob", ActiveCalls(("1796149370.5", "blf:c2"), (), 2.0))
    calls.save(redis_client, "other", "carol", ActiveCalls(("c3",)))

    assert calls.read_all(redis_client, T) == {
        "alice": ActiveCalls(("blf:c1",), ("g1",), 1.0),
        "bob": ActiveCalls(("1796149370.5", "blf:c2"), (), 2.0),
    }
    assert calls.read_all(redis_client, "nobody") == {}
