"""core.state.delivery against a real Redis: desired versions, applied, dead letters, and the
one pending rule that every reader (workers, status, user view, status page) goes by."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
import redis
from pydantic import HttpUrl, SecretStr

from core.settings import PbxUser, TenantSettings
from core.state import delivery, profiles
from core.state.delivery import DeadLetter, Delivery, Desired
from core.status import system as status
from core.status import user as user_status
from core.status.page import user_table
from workers.pbx.base import ProfileChange

T = "contoso"


def tenant(*users: str) -> TenantSettings:
    return TenantSettings(
        name=T, tenant_id="t", client_id="c", client_secret=SecretStr("s"),
        public_base_url=HttpUrl("https://bridge.example.test"),
        pbx_users=[PbxUser(username=u) for u in users],
    )  # fmt: skip


def desired(version: int) -> Desired:
    return Desired("ann", "Away", version=version)


def as_stored(d: Desired) -> Desired:
    """`d` as Redis keeps it: Lua's cjson writes 14 significant digits of set_at."""
    return replace(d, set_at=float(f"{d.set_at:.14g}"))


def dead(version: int) -> DeadLetter:
    return DeadLetter("ann", "Away", version=version, reason="refused")


# ---- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "pending"),
    [
        (Delivery(), False),  # nothing desired
        (Delivery(desired(2), applied=1), True),
        (Delivery(desired(2), applied=2), False),  # the PBX has it
        (Delivery(desired(2), applied=1, dead=dead(2)), False),  # refused: waits for a replay
        (Delivery(desired(3), applied=1, dead=dead(2)), True),  # a newer version than refused
    ],
)
def test_pending_means_behind_and_not_dead_lettered(record: Delivery, pending: bool) -> None:
    assert record.pending is pending


def test_a_dead_lettered_user_is_behind_but_not_pending() -> None:
    record = Delivery(desired(2), applied=1, dead=dead(2))

    assert (record.behind, record.pending) == (True, False)


# ---- the codecs ---------------------------------------------------------------------------


def test_desired_reads_the_json_the_version_script_writes() -> None:
    stored = b'{"activity":"Away","availability":"Away","profile":"Away","set_at":5.5,' \
             b'"user":"ann","version":4}'  # fmt: skip

    assert Desired.from_bytes(stored) == Desired("ann", "Away", "Away", "Away", 4, 5.5)


def test_records_round_trip_through_bytes() -> None:
    letter = DeadLetter("ann", "Away", "Away", "Away", 2, 5.5, "HTTP 404", 9.0)

    assert Desired.from_bytes(desired(2).to_bytes()) == desired(2)
    assert DeadLetter.from_bytes(letter.to_bytes()) == letter


def test_a_dead_letter_is_the_refused_record_plus_reason_and_time() -> None:
    letter = DeadLetter("ann", "Away", "Away", "Away", 2, 5.5, "HTTP 404", 9.0)

    assert orjson.loads(letter.to_bytes()) == {
        **orjson.loads(Desired("ann", "Away", "Away", "Away", 2, 5.5).to_bytes()),
        "reason": "HTTP 404", "at": 9.0,
    }  # fmt: skip


def test_incomplete_records_read_with_defaults_and_the_hash_field_as_user() -> None:
    assert DeadLetter.from_bytes(b"{}", "ann") == DeadLetter("ann")
    assert Desired.from_bytes(b'{"version": "2", "profile": 7}', "ann") == Desired("ann")


def test_unreadable_records_read_as_missing() -> None:
    assert Desired.from_bytes(None) is None
    assert Desired.from_bytes(b"not json") is None
    assert DeadLetter.from_bytes(b'"a string"') is None


# ---- operations ---------------------------------------------------------------------------


def test_versions_grow_per_user(redis_client: redis.Redis) -> None:
    first = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Away"),
                                                   ProfileChange("bob", "Busy")])  # fmt: skip
    [again] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Busy")])

    assert [d.version for d in first] == [1, 1]
    assert (again.version, again.profile) == (2, "Busy")
    assert as_stored(again) == delivery.load(redis_client, T, ["ann"])["ann"].desired


def test_load_gives_every_asked_user_a_record(redis_client: redis.Redis) -> None:
    [made] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Away")])
    delivery.dead_letter(redis_client, T, made, "HTTP 404")

    loaded = delivery.load(redis_client, T, ["ann", "nobody"])

    assert loaded["nobody"] == Delivery()
    assert (loaded["ann"].desired, loaded["ann"].applied) == (as_stored(made), 0)
    assert loaded["ann"].dead is not None and loaded["ann"].dead.reason == "HTTP 404"


def test_applying_clears_the_dead_letter_and_logs_the_transition(
    redis_client: redis.Redis,
) -> None:
    [made] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Away")])
    delivery.dead_letter(redis_client, T, made, "HTTP 503 for too long")

    delivery.mark_applied(redis_client, T, [made], {"adapter": "builtin"})

    assert delivery.load(redis_client, T, ["ann"])["ann"] == Delivery(as_stored(made), 1)
    events = profiles.recent_events(redis_client, T, "ann")
    assert [e["result"] for e in events] == ["applied", "dead-lettered"]
    assert (events[0]["adapter"], events[1]["reason"]) == ("builtin", "HTTP 503 for too long")


def test_dead_letters_are_listed_oldest_first_and_cleared_by_name(
    redis_client: redis.Redis,
) -> None:
    for user, at in [("ann", 20.0), ("bob", 10.0)]:
        redis_client.hset(delivery.dead_key(T), user, DeadLetter(user, at=at).to_bytes())

    assert [d.user for d in delivery.dead_letters(redis_client, T)] == ["bob", "ann"]
    delivery.clear_dead_letters(redis_client, T, ["bob"])
    assert [d.user for d in delivery.dead_letters(redis_client, T)] == ["ann"]


def test_keys_keep_their_stored_names() -> None:
    assert [delivery.desired_key(T), delivery.versions_key(T), delivery.applied_key(T),
            delivery.dead_key(T)] == [
        "pb:tenant:contoso:desired", "pb:tenant:contoso:desired:versions",
        "pb:tenant:contoso:applied", "pb:tenant:contoso:dead",
    ]  # fmt: skip


# ---- every reader goes by the one rule ----------------------------------------------------


def seed_every_case(redis_client: redis.Redis) -> None:
    """ann applied, bob waiting, cy refused, dee refused and then given a newer version."""
    made = {d.user: d for d in delivery.set_desired(redis_client, T, [
        ProfileChange(u, "Away") for u in ("ann", "bob", "cy", "dee")
    ])}  # fmt: skip
    delivery.mark_applied(redis_client, T, [made["ann"]], {})
    delivery.dead_letter(redis_client, T, made["cy"], "HTTP 404: no such extension")
    delivery.dead_letter(redis_client, T, made["dee"], "HTTP 404: no such extension")
    delivery.set_desired(redis_client, T, [ProfileChange("dee", "Busy")])


PENDING = ["bob", "dee"]


def test_a_dead_lettered_user_is_pending_for_no_reader(redis_client: redis.Redis) -> None:
    seed_every_case(redis_client)
    settings = tenant("ann", "bob", "cy", "dee")

    rows = user_table(redis_client, settings)["user_rows"]

    assert delivery.pending_users(redis_client, T) == PENDING
    assert status.pending_deliveries(redis_client, T) == len(PENDING)
    assert status.tenant_status(redis_client, settings).pending_deliveries == len(PENDING)
    assert [r["user"] for r in rows if r["pending"]] == PENDING
    shown = {u: user_status.user_status(redis_client, settings, u) for u in ("ann", "cy")}
    assert [(s.pending, s.in_sync) for s in shown.values()] == [(False, True), (False, False)]
    assert user_status.user_status(redis_client, settings, "bob").pending


# ---- what the PBX may show of ours --------------------------------------------------------


def test_own_profiles_name_the_last_applied_and_the_one_on_its_way(
    redis_client: redis.Redis,
) -> None:
    [first] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Away")])
    delivery.mark_applied(redis_client, T, [first], {"adapter": "builtin"})
    delivery.set_desired(redis_client, T, [ProfileChange("ann", "Busy"),
                                           ProfileChange("bob", "Lunch")])  # fmt: skip
    [carl] = delivery.set_desired(redis_client, T, [ProfileChange("carl", "Busy")])
    delivery.mark_applied(redis_client, T, [carl], {"adapter": "builtin"})

    own = delivery.own_profiles(redis_client, T, ["ann", "bob", "carl", "nobody"])

    assert own == {"ann": {"Away", "Busy"}, "bob": {"Lunch"}, "carl": {"Busy"},
                   "nobody": frozenset()}  # fmt: skip


def test_a_refused_profile_is_not_taken_for_ours(redis_client: redis.Redis) -> None:
    [first] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Away")])
    delivery.mark_applied(redis_client, T, [first], {"adapter": "builtin"})
    [refused] = delivery.set_desired(redis_client, T, [ProfileChange("ann", "Busy")])
    delivery.dead_letter(redis_client, T, refused, "HTTP 400")

    assert delivery.own_profiles(redis_client, T, ["ann"]) == {"ann": {"Away"}}
