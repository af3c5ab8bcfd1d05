from __future__ import annotations

from typing import cast

import orjson
import pytest
import redis

from core.settings import MappingSettings
from core.state import links, pbx, profiles
from core.state.delivery import pending_users
from emulator.harness.redis_server import RedisServer, StreamEntries
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import PresenceUpdate, process

T = "contoso"
PASCOM = compile_rules(MappingSettings(preset="pascom"))
GLOCOM = compile_rules(MappingSettings(preset="glocom"))


def link(client: redis.Redis, graph_id: str, *pbx_users: str) -> None:
    links.replace(client, T, {**links.read_all(client, T), graph_id: pbx_users})


def run(client: redis.Redis, *updates: PresenceUpdate, rules=GLOCOM, now: float = 1000.0):  # type: ignore[no-untyped-def]
    result = process(client, T, rules, 0.0, list(updates), now=now)
    deliver(client, T, BuiltinAdapter(client, T), [c.user for c in result.changes])
    return result


def shown(client: redis.Redis, user: str) -> str | None:
    return BuiltinAdapter(client, T).read_profile(user)


def test_teams_presence_becomes_the_pbx_profile(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "DoNotDisturb", "DoNotDisturb", "0001"))
    assert shown(redis_client, "alice") == "Do Not Disturb"


def test_one_graph_user_drives_every_linked_pbx_user(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice", "alice-desk")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"))
    assert (shown(redis_client, "alice"), shown(redis_client, "alice-desk")) == ("Away", "Away")


def test_meeting_is_sticky_and_the_previous_profile_returns(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"), rules=PASCOM)
    redis_client.hset(
        profiles.profiles_key(T),
        "alice",
        orjson.dumps({"current": "Lunch", "restore_to": "Lunch", "version": 1}),
    )
    run(redis_client, PresenceUpdate("g1", "Busy", "InAMeeting", "0002"), rules=PASCOM)
    in_meeting = shown(redis_client, "alice")
    run(redis_client, PresenceUpdate("g1", "Available", "Available", "0003"), rules=PASCOM)
    assert (in_meeting, shown(redis_client, "alice")) == ("Teams Meeting", "Lunch")


def test_older_sequence_number_is_dropped(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0005"))
    result = run(redis_client, PresenceUpdate("g1", "Busy", "Busy", "0004"))
    assert (result.stale, shown(redis_client, "alice")) == (1, "Away")


def test_older_read_without_sequence_is_dropped(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", None, observed_at=20.0))
    result = run(redis_client, PresenceUpdate("g1", "Busy", "Busy", None, observed_at=10.0))
    assert result.stale == 1


def test_same_presence_again_is_a_no_op(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"))
    result = run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"))
    assert (result.duplicate, result.changes) == (1, [])


def test_reordered_batch_applies_the_newest(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(
        redis_client,
        PresenceUpdate("g1", "Busy", "Busy", "0003"),
        PresenceUpdate("g1", "Away", "Away", "0002"),
    )
    assert shown(redis_client, "alice") == "Busy"


def test_unlinked_user_is_counted_not_applied(redis_client: redis.Redis) -> None:
    result = run(redis_client, PresenceUpdate("nobody", "Away", "Away", "1"))
    assert (result.unlinked, result.changes) == (1, [])


def test_static_links_from_the_tenants_file_are_used(redis_client: redis.Redis) -> None:
    result = process(
        redis_client,
        T,
        GLOCOM,
        0.0,
        [PresenceUpdate("g9", "Away", "Away", "1")],
        static_links={"g9": ["bob"]},
        now=1.0,
    )
    assert [c.user for c in result.changes] == ["bob"]


def test_each_transition_is_in_the_user_event_log(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"))
    events = profiles.recent_events(redis_client, T, "alice")
    assert [e["result"] for e in events] == ["applied", "decided"]
    assert events[0]["profile"] == "Away" and events[0]["latency_ms"] >= 0


def test_delivery_is_idempotent(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    run(redis_client, PresenceUpdate("g1", "Away", "Away", "0001"))
    again = deliver(redis_client, T, BuiltinAdapter(redis_client, T), ["alice"])
    assert again.applied == []


def test_pbx_outage_keeps_the_desired_state_pending(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    process(redis_client, T, GLOCOM, 0.0, [PresenceUpdate("g1", "Away", "Away", "1")], now=1.0)
    down = RedisServer()  # a PBX that does not answer: a server that is not running
    outcome = deliver(redis_client, T, BuiltinAdapter(redis.Redis(port=down.port), T), ["alice"])
    assert outcome.deferred == ["alice"]  # the PBX backs off; nothing is lost meanwhile
    assert pending_users(redis_client, T) == ["alice"]


def test_after_the_outage_only_the_latest_profile_is_applied(redis_client: redis.Redis) -> None:
    link(redis_client, "g1", "alice")
    process(redis_client, T, GLOCOM, 0.0, [PresenceUpdate("g1", "Away", "Away", "1")], now=1.0)
    process(redis_client, T, GLOCOM, 0.0, [PresenceUpdate("g1", "Busy", "Busy", "2")], now=2.0)
    deliver(redis_client, T, BuiltinAdapter(redis_client, T), pending_users(redis_client, T))
    events = cast(StreamEntries, redis_client.xrange(pbx.builtin_events_key(T)))
    assert [orjson.loads(f[b"data"])["profile"] for _, f in events] == ["Busy"]


@pytest.mark.parametrize("count", [1, 650])
def test_a_batch_of_users_is_processed_together(redis_client: redis.Redis, count: int) -> None:
    for n in range(count):
        link(redis_client, f"g{n}", f"u{n}")
    result = run(
        redis_client, *[PresenceUpdate(f"g{n}", "Away", "Away", "1") for n in range(count)]
    )
    assert len(result.changes) == count
