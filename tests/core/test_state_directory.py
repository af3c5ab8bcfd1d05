"""The directory records: codecs tolerant of older values, atomic writes, the sync lock."""

from __future__ import annotations

import orjson
import pytest
import redis

from core.state import directory, links
from core.state.directory import (
    Conflict,
    DirectoryBusy,
    DirectoryLock,
    GraphUser,
    SyncReport,
    Tombstone,
)

T = "contoso"


# ---- Graph users ----------------------------------------------------------------------------


def test_a_user_is_stored_as_its_text_fields_only() -> None:
    item = {"id": "g1", "userPrincipalName": "a@x", "mail": None, "jobTitle": "boss",
            "displayName": "Alice", "mailNickname": 7}  # fmt: skip

    stored = directory.encode_graph_item(item)

    assert orjson.loads(stored) == {"userPrincipalName": "a@x", "displayName": "Alice"}
    assert GraphUser.from_graph(item).to_bytes() == stored
    assert GraphUser.from_bytes(stored, "g1") == GraphUser.from_graph(item)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"mail": "a@x", "department": "Sales"}', GraphUser("g1", mail="a@x")),
        (b'{"mail": "a@x", "displayName": 3}', GraphUser("g1", mail="a@x")),
        (b"[1, 2]", GraphUser("g1")),
        (b"not json", GraphUser("g1")),
    ],
)  # fmt: skip
def test_a_stored_user_from_another_writer_still_reads(raw: bytes, expected: GraphUser) -> None:
    assert GraphUser.from_bytes(raw, "g1") == expected


def test_a_delta_item_overrides_what_it_carries_and_null_clears() -> None:
    before = directory.encode_graph_item({"mail": "a@x", "displayName": "Alice"})

    after = directory.merge_graph_item(before, {"displayName": "Alicia", "mail": None})

    assert orjson.loads(after) == {"displayName": "Alicia"}


def test_a_full_import_replaces_the_users_and_forgives_tombstones(
    redis_client: redis.Redis,
) -> None:
    directory.replace_users(redis_client, T, [("g1", b"{}"), ("gone", b"{}")], "https://x/1")
    directory.apply_delta(redis_client, T, {}, {"g1": Tombstone(5.0, {"mail": "a@x"})}, ["gone"],
                          "https://x/2")  # fmt: skip
    assert directory.stored_users(redis_client, T, ["g1", "gone"]) == {"g1": None, "gone": None}

    count = directory.replace_users(redis_client, T, [("g1", b'{"mail":"a@x"}')], "https://x/3")

    assert count == 1
    assert [u.id for u in directory.load_users(redis_client, T)] == ["g1"]
    assert redis_client.hlen(directory.tombstones_key(T)) == 0
    assert directory.delta_link(redis_client, T) == "https://x/3"


def test_a_user_found_by_upn_in_any_case(redis_client: redis.Redis) -> None:
    user = GraphUser("g1", userPrincipalName="Ann@Contoso.test")
    directory.replace_users(redis_client, T, [(user.id, user.to_bytes())], "https://x/1")

    assert directory.find_by_upn(redis_client, T, "ann@contoso.TEST") == "g1"
    assert directory.find_by_upn(redis_client, T, "bob@contoso.test") is None


# ---- tombstones -----------------------------------------------------------------------------


def test_a_tombstone_keeps_its_json_shape() -> None:
    stone = Tombstone.of(b'{"mail": "a@x"}', 12.5)

    assert orjson.loads(stone.to_bytes()) == {"at": 12.5, "user": {"mail": "a@x"}}
    assert Tombstone.from_bytes(stone.to_bytes()) == stone


@pytest.mark.parametrize("raw", [b'{"user": {}}', b'{"at": "soon"}', b"[]", b"garbage"])
def test_an_unreadable_tombstone_counts_as_old(raw: bytes) -> None:
    assert Tombstone.from_bytes(raw).at == 0.0


def test_tombstones_past_the_retention_are_pruned(redis_client: redis.Redis) -> None:
    now = 100 * 86_400.0
    directory.apply_delta(redis_client, T, {}, {
        "old": Tombstone(now - directory.TOMBSTONE_DAYS * 86_400 - 1),
        "new": Tombstone(now - 60),
    }, [], "https://x/1")  # fmt: skip

    assert directory.prune_tombstones(redis_client, T, now) == 1
    assert redis_client.hkeys(directory.tombstones_key(T)) == [b"new"]


# ---- status ---------------------------------------------------------------------------------


def report() -> SyncReport:
    return SyncReport(
        tenant=T, mode="delta", reason="delta link", synced_at=5.0, pages=2, graph_users=10,
        upserted=3, soft_deleted=1, hard_deleted=1, tombstones=1, pbx_users=4,
        pbx_source="adapter", linked_pbx=3, linked_graph=2, unlinked_graph=8, unlinked_pbx=1,
        disabled=1, static_links=1, conflicts=(Conflict("200", ("g1", "g2")),),
        fingerprint="f", import_seconds=0.5, match_seconds=0.25,
    )  # fmt: skip


def test_a_status_round_trips_through_its_stored_shape() -> None:
    stored = orjson.loads(report().to_bytes())

    assert stored["changes"] == {"upserted": 3, "soft_deleted": 1, "hard_deleted": 1}
    assert stored["conflicts"] == [{"pbx_user": "200", "graph_ids": ["g1", "g2"]}]
    assert stored["conflict_count"] == 1
    assert SyncReport.from_bytes(report().to_bytes()) == report()


def test_a_partial_or_foreign_status_takes_defaults() -> None:
    raw = orjson.dumps({"synced_at": 7, "graph_users": 3, "mode": "sideways",
                        "pbx_source": None, "linked_pbx": "many", "extra": True,
                        "conflicts": [{"pbx_user": "x"}, "junk"]})  # fmt: skip

    status = SyncReport.from_bytes(raw)

    assert (status.synced_at, status.graph_users, status.mode) == (7.0, 3, "full")
    assert (status.pbx_source, status.linked_pbx, status.fingerprint) == ("tenants_file", 0, "")
    assert status.conflicts == (Conflict("x", ()),)
    assert SyncReport.from_bytes(b"not json") == SyncReport()


def test_no_status_before_the_first_sync(redis_client: redis.Redis) -> None:
    assert directory.read_status(redis_client, T) is None


def test_the_status_is_swapped_in_with_the_links(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["alice"]},
                  lambda pipe: directory.write_status(pipe, T, report()))  # fmt: skip

    assert directory.read_status(redis_client, T) == report()
    pipe = redis_client.pipeline(transaction=False)
    directory.queue_status(pipe, T)
    assert directory.status_from(pipe.execute()[0]) == report()


# ---- lock -----------------------------------------------------------------------------------


def test_one_sync_per_tenant_at_a_time(redis_client: redis.Redis) -> None:
    with DirectoryLock(redis_client, T):
        with pytest.raises(DirectoryBusy), DirectoryLock(redis_client, T):
            pass
        with DirectoryLock(redis_client, "fabrikam"):
            pass
    with DirectoryLock(redis_client, T):
        pass


def test_a_lock_that_expired_cannot_free_its_successor(redis_client: redis.Redis) -> None:
    lock = DirectoryLock(redis_client, T)
    with lock:
        redis_client.set(directory.lock_key(T), "the next holder")  # ours expired meanwhile

    assert redis_client.get(directory.lock_key(T)) == b"the next holder"
