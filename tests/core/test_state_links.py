"""Links and their reverse index, against a real Redis."""

from __future__ import annotations

import pytest
import redis
from pydantic import HttpUrl, SecretStr

from core.settings import PbxUser, TenantSettings
from core.state import links
from core.state.links import LinkedIds
from core.status import page
from core.status import user as user_status

T = "contoso"


def tenant_settings(**changes: object) -> TenantSettings:
    base = TenantSettings(
        name=T, tenant_id="t", client_id="c", client_secret=SecretStr("s"),
        public_base_url=HttpUrl("https://bridge.example.test"),
    )  # fmt: skip
    return base.model_copy(update=changes)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


# ---- codec ----------------------------------------------------------------------------------


def test_a_links_field_is_a_sorted_json_list_as_stored_before() -> None:
    assert LinkedIds(("bob", "alice", "bob")).to_bytes() == b'["alice","bob"]'
    assert LinkedIds.from_bytes(b'["alice","bob"]') == LinkedIds(("alice", "bob"))


@pytest.mark.parametrize("raw", [None, b"", b"not json", b'{"a": 1}', b"42", b"null"])
def test_an_unreadable_links_field_links_nobody(raw: bytes | None) -> None:
    assert LinkedIds.from_bytes(raw) == LinkedIds()


def test_entries_that_are_not_names_are_skipped() -> None:
    assert LinkedIds.from_bytes(b'["alice", 7, null, "bob"]').ids == ("alice", "bob")


# ---- writing and reading --------------------------------------------------------------------


def test_one_write_installs_the_links_and_their_reverse_index(redis_client: redis.Redis) -> None:
    count = links.replace(redis_client, T, {"g1": ["alice", "bob"], "g2": ["bob"]})

    assert count == 2
    assert links.read_all(redis_client, T) == {"g1": ["alice", "bob"], "g2": ["bob"]}
    assert links.graph_ids_of(redis_client, T, "bob") == ["g1", "g2"]
    assert links.graph_ids_of(redis_client, T, "alice") == ["g1"]
    assert links.all_graph_ids(redis_client, T) == {"alice": ["g1"], "bob": ["g1", "g2"]}
    assert links.linked_graph_ids(redis_client, T) == ["g1", "g2"]
    assert links.count(redis_client, T) == 2


def test_a_new_import_leaves_no_stale_reverse_entries(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["alice", "bob"], "g2": ["carol"]})

    links.replace(redis_client, T, {"g3": ["bob"], "g2": ["carol", "dave"]})

    assert links.all_graph_ids(redis_client, T) == {
        "bob": ["g3"], "carol": ["g2"], "dave": ["g2"]
    }  # fmt: skip
    assert links.graph_ids_of(redis_client, T, "alice") == []
    assert links.pbx_users_of(redis_client, T, "g1") == []


def test_a_delta_write_changes_only_the_changed_fields_and_keeps_the_index_in_step(
    redis_client: redis.Redis,
) -> None:
    before = {f"g{n}": [f"user{n}"] for n in range(20)}
    before["g20"] = ["shared", "user20"]
    before["g21"] = ["shared"]
    links.replace(redis_client, T, before)
    after = dict(before)
    after["g1"] = []  # a removed link
    after["g22"] = after.pop("g2")  # a PBX user moving to another Graph id
    after["g21"] = ["shared", "user3"]  # user3 now driven by two Graph ids
    del after["g20"]  # a Graph id gone: "shared" keeps only g21
    redis_client.config_resetstat()

    assert links.replace(redis_client, T, after, lambda pipe: pipe.set("pb:test:also", "1")) == 20

    calls = command_calls(redis_client)
    assert "rename" not in calls and "evalsha" not in calls  # no full replace
    expected = {gid: sorted(users) for gid, users in after.items() if users}
    assert links.read_all(redis_client, T) == expected
    reverse: dict[str, list[str]] = {}
    for gid, users in expected.items():
        for user in users:
            reverse.setdefault(user, []).append(gid)
    assert links.all_graph_ids(redis_client, T) == {u: sorted(g) for u, g in reverse.items()}
    assert links.graph_ids_of(redis_client, T, "user2") == ["g22"]
    assert links.graph_ids_of(redis_client, T, "user1") == []
    assert links.graph_ids_of(redis_client, T, "user20") == []
    assert links.graph_ids_of(redis_client, T, "user3") == ["g21", "g3"]
    assert redis_client.get("pb:test:also") == b"1"


def test_links_without_an_index_are_replaced_whole_not_patched(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {f"g{n}": [f"user{n}"] for n in range(10)})
    redis_client.delete(links.index_key(T))  # as an older version left it

    links.replace(redis_client, T, {f"g{n}": [f"user{n}"] for n in range(1, 10)})

    assert redis_client.hlen(links.index_key(T)) == 9
    assert links.graph_ids_of(redis_client, T, "user0") == []


def test_an_empty_import_removes_both_hashes(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["alice"]})

    assert links.replace(redis_client, T, {}) == 0

    assert not redis_client.exists(links.links_key(T), links.index_key(T))
    assert links.graph_ids_of(redis_client, T, "alice") == []


def test_writes_queued_by_the_caller_land_in_the_same_multi(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["alice"]}, lambda pipe: pipe.set("pb:test:also", "1"))

    assert redis_client.get("pb:test:also") == b"1"
    assert redis_client.keys("*:tmp:*") == []  # the temporary hashes were renamed, not left


def test_the_reverse_lookup_is_one_hget_not_a_scan(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {f"g{n}": [f"user{n}"] for n in range(500)})
    redis_client.config_resetstat()

    assert links.graph_ids_of(redis_client, T, "user7") == ["g7"]

    calls = command_calls(redis_client)
    assert calls.get("hget") == 1
    assert not {"hgetall", "hscan", "hkeys", "hvals"} & set(calls)


ODD_NAMES = ['quo"te', "back\\slash", "caf\u00e9 \U0001f600", "tab\there", "a/b"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_names_reach_redis_byte_for_byte_through_the_scripted_fill(
    redis_client: redis.Redis, name: str
) -> None:
    links.replace(redis_client, T, {name: [name]})

    expected = LinkedIds((name,)).to_bytes()
    assert redis_client.hget(links.links_key(T), name.encode()) == expected
    assert redis_client.hget(links.index_key(T), name.encode()) == expected


def test_a_tenant_larger_than_one_chunk_is_written_whole(redis_client: redis.Redis) -> None:
    linked = {f"g{n}": [f"user{n}", "shared"] for n in range(4_500)}

    assert links.replace(redis_client, T, linked) == 4_500

    assert links.read_all(redis_client, T) == {g: sorted(u) for g, u in linked.items()}
    assert links.graph_ids_of(redis_client, T, "shared") == sorted(linked)
    assert redis_client.hlen(links.index_key(T)) == 4_501
    assert redis_client.ttl(links.index_key(T)) == -1  # the temporary key's expiry is gone


def test_other_tenants_links_are_left_alone(redis_client: redis.Redis) -> None:
    links.replace(redis_client, "fabrikam", {"g9": ["zed"]})

    links.replace(redis_client, T, {"g1": ["alice"]})

    assert links.graph_ids_of(redis_client, "fabrikam", "zed") == ["g9"]
    assert links.graph_ids_of(redis_client, T, "zed") == []


def test_a_batch_reads_links_inside_its_own_pipeline(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["bob", "alice"]})
    pipe = redis_client.pipeline(transaction=False)
    links.queue_pbx_users(pipe, T, ["g1", "g2", "g3"])
    pipe.ping()

    raw, _ = pipe.execute()

    assert links.pbx_users_from(["g1", "g2", "g3"], raw, {"g3": ["carol"], "g1": ["alice"]}) == [
        ["alice", "bob"], [], ["carol"]
    ]  # fmt: skip


# ---- data written by the version before the reverse index -----------------------------------


def older_links(client: redis.Redis, mapping: dict[str, bytes]) -> None:
    """The links hash alone, as the version before the reverse index wrote it."""
    client.hset(links.links_key(T), mapping=mapping)  # type: ignore[arg-type]


def test_links_without_an_index_still_answer_and_the_index_is_built_once(
    redis_client: redis.Redis,
) -> None:
    older_links(redis_client, {"g1": b'["alice","bob"]', "g2": b'["bob"]'})

    assert links.graph_ids_of(redis_client, T, "bob") == ["g1", "g2"]

    assert redis_client.hgetall(links.index_key(T)) == {
        b"alice": b'["g1"]', b"bob": b'["g1","g2"]'
    }  # fmt: skip
    redis_client.config_resetstat()
    assert links.graph_ids_of(redis_client, T, "alice") == ["g1"]
    assert "hgetall" not in command_calls(redis_client)  # built once, then only looked up


def test_the_whole_index_is_built_from_older_links_too(redis_client: redis.Redis) -> None:
    older_links(redis_client, {"g1": b'["alice"]', "g2": b'["alice"]'})

    assert links.all_graph_ids(redis_client, T) == {"alice": ["g1", "g2"]}
    assert redis_client.exists(links.index_key(T))


def test_an_unlinked_user_of_an_older_tenant_finds_nothing(redis_client: redis.Redis) -> None:
    older_links(redis_client, {"g1": b'["alice"]'})

    assert links.graph_ids_of(redis_client, T, "nobody") == []
    assert links.graph_ids_of(redis_client, T, "alice") == ["g1"]


def test_a_tenant_without_links_finds_nothing(redis_client: redis.Redis) -> None:
    assert links.graph_ids_of(redis_client, T, "alice") == []
    assert links.all_graph_ids(redis_client, T) == {}
    assert not redis_client.exists(links.index_key(T))


# ---- static links from the tenants file -----------------------------------------------------


def test_static_links_follow_the_enable_precedence() -> None:
    settings = tenant_settings(enabled=False, pbx_users=[
        PbxUser(username="on", graph_id="g1", enabled=True),
        PbxUser(username="follows", graph_id="g1"),
        PbxUser(username="off", graph_id="g2", enabled=False),
        PbxUser(username="matched"),
    ])  # fmt: skip

    assert links.static_links(settings) == {"g1": ["on"]}
    assert links.static_links(settings.model_copy(update={"enabled": True})) == {
        "g1": ["on", "follows"]
    }  # fmt: skip


def test_static_links_join_the_directory_links(redis_client: redis.Redis) -> None:
    links.replace(redis_client, T, {"g1": ["alice"]})
    static = {"g2": ["alice"], "g3": ["bob"]}

    assert links.graph_ids_of(redis_client, T, "alice", static) == ["g1", "g2"]
    assert links.all_graph_ids(redis_client, T, static) == {
        "alice": ["g1", "g2"], "bob": ["g3"]
    }  # fmt: skip
    assert links.pbx_users_of(redis_client, T, "g3", static) == ["bob"]


@pytest.mark.parametrize("enabled", [True, False])
def test_user_status_and_the_admin_page_apply_the_workers_static_link_rule(
    redis_client: redis.Redis, enabled: bool
) -> None:
    """A disabled static link drives nobody in the worker, so no status view shows it."""
    settings = tenant_settings(pbx_users=[PbxUser(username="ann", graph_id="g-s", enabled=enabled)])
    expected = ["g-s"] if enabled else []

    assert links.graph_ids_of(redis_client, T, "ann", links.static_links(settings)) == expected
    assert user_status.user_status(redis_client, settings, "ann").graph_ids == expected
    assert user_status.resolve_pbx_users(redis_client, settings, "g-s") == (
        ["ann"] if enabled else []
    )
    [row] = page.user_table(redis_client, settings)["user_rows"]
    assert (row["user"], row["graph_ids"]) == ("ann", expected)
