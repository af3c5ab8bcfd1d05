"""Presence records: the last presence applied and our own session's marker."""

from __future__ import annotations

import orjson
import pytest
import redis

from core.state import presence
from core.state.presence import LastPresence, OwnPresence

T = "contoso"


def test_the_last_presence_keeps_its_stored_shape() -> None:
    last = LastPresence("Busy", "InACall", "0005", 12.5)

    assert orjson.loads(last.to_bytes()) == {
        "availability": "Busy", "activity": "InACall", "sequence": "0005", "observed_at": 12.5
    }  # fmt: skip
    assert LastPresence.from_bytes(last.to_bytes()) == last


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # As the sweep's tests and older writers left it: no sequence, no time.
        (b'{"availability": "Away", "activity": "Away"}', LastPresence("Away", "Away")),
        (b'{"availability": "Away", "sequence": 5, "observed_at": null}', LastPresence("Away")),
        (b'{"observed_at": 3}', LastPresence(observed_at=3.0)),
        (b"[]", LastPresence()),
        (b"garbage", LastPresence()),
    ],
)  # fmt: skip
def test_an_older_last_presence_still_reads(raw: bytes, expected: LastPresence) -> None:
    assert LastPresence.from_bytes(raw) == expected


@pytest.mark.parametrize("raw", [b'["Busy"]', b'{"a": 1}', b"nope"])
def test_an_unreadable_own_marker_matches_no_real_presence(raw: bytes) -> None:
    assert OwnPresence.from_bytes(raw) == OwnPresence()
    assert OwnPresence("Busy", "InACall").to_bytes() == b'["Busy","InACall"]'


def test_a_batch_reads_both_in_its_one_round_trip(redis_client: redis.Redis) -> None:
    presence.record(redis_client, T, {"g1": LastPresence("Away", "Away", "1", 2.0)})
    presence.set_own(redis_client, T, "g2", OwnPresence("Busy", "InACall"), 60)
    pipe = redis_client.pipeline(transaction=False)
    presence.queue_last(pipe, T, ["g1", "g2"])
    presence.queue_own(pipe, T, ["g1", "g2"])

    last, own = pipe.execute()

    assert presence.last_from(last) == [LastPresence("Away", "Away", "1", 2.0), None]
    assert presence.own_from(own) == [None, OwnPresence("Busy", "InACall")]


def test_the_own_marker_lasts_the_session_and_can_be_cleared(redis_client: redis.Redis) -> None:
    presence.set_own(redis_client, T, "g1", OwnPresence("Busy", "InACall"), 960)

    assert 0 < redis_client.ttl(presence.own_key(T, "g1")) <= 960
    presence.clear_own(redis_client, T, "g1")
    assert not redis_client.exists(presence.own_key(T, "g1"))


def test_reading_no_ids_reads_nothing(redis_client: redis.Redis) -> None:
    assert presence.read_last(redis_client, T, []) == []
    presence.record(redis_client, T, {})  # nothing to write is no command
    assert not redis_client.exists(presence.presence_key(T))
